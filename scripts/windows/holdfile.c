/*
 * holdfile.exe FILE SECONDS: opens FILE with no sharing, as a running PACS service
 * holds its database or log files, says "held", and keeps it open for SECONDS.
 * Used by the Wine suite (tests/it/wine.rs) to show that such a file is reported
 * by name as not backed up. Built by scripts/test.sh with MinGW.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

int wmain(int argc, wchar_t **argv)
{
    if (argc != 3) {
        fwprintf(stderr, L"usage: holdfile FILE SECONDS\n");
        return 2;
    }
    HANDLE h = CreateFileW(argv[1], GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        fwprintf(stderr, L"cannot open: %lu\n", GetLastError());
        return 1;
    }
    printf("held\n");
    fflush(stdout);
    Sleep((DWORD)_wtoi(argv[2]) * 1000);
    CloseHandle(h);
    return 0;
}
