/*
 * bcryptprimitives.dll for Wine 8 (Debian's wine64), placed next to pacsbak.exe by
 * scripts/test.sh. Rust's standard library (1.78 and later) takes its random
 * numbers from ProcessPrng in bcryptprimitives.dll; Wine 8 does not export it, and
 * a Rust program then exits at start-up without a word. This ProcessPrng fills the
 * buffer from advapi32's SystemFunction036 (RtlGenRandom), which Wine has.
 * Only for the Wine test run: a real Windows has its own DLL and never loads this.
 *
 * Built with: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c
 */
#include <windows.h>

typedef BOOLEAN(WINAPI *rtl_gen_random)(PVOID, ULONG);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    static rtl_gen_random gen;
    if (!gen) {
        HMODULE advapi = LoadLibraryA("advapi32.dll");
        if (!advapi)
            return FALSE;
        gen = (rtl_gen_random)GetProcAddress(advapi, "SystemFunction036");
        if (!gen)
            return FALSE;
    }
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!gen(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
