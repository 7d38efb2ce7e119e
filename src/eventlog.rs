//! Failures of the Windows service in the Windows event log (Application log,
//! source `pacsbak`), where a Windows administrator's monitoring looks: every
//! ERROR-level event, as its message and fields.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, RegisterEventSourceW, ReportEventW, EVENTLOG_ERROR_TYPE,
};

/// A tracing layer writing ERROR events to the event log.
pub struct EventLogLayer {
    /// The event source handle (a pointer, kept as an integer to be Send and Sync).
    handle: usize,
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

impl EventLogLayer {
    /// Registers the source `pacsbak`; `None` when Windows refuses.
    pub fn open() -> Option<EventLogLayer> {
        let name = wide("pacsbak");
        // SAFETY: both pointers are valid for the call (null: the local computer;
        // `name` is NUL-terminated and outlives it).
        let h = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
        (!h.is_null()).then_some(EventLogLayer { handle: h as usize })
    }
}

impl Drop for EventLogLayer {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegisterEventSourceW and is released once.
        unsafe {
            DeregisterEventSource(self.handle as _);
        }
    }
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?} ");
        } else {
            let _ = write!(self.0, "{}={value:?} ", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for EventLogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let message = wide(text.0.trim_end());
        let strings = [message.as_ptr()];
        // SAFETY: the handle is open; `strings` holds one NUL-terminated string
        // that outlives the call; no SID, no raw data.
        unsafe {
            ReportEventW(
                self.handle as _,
                EVENTLOG_ERROR_TYPE,
                0,
                1,
                std::ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                std::ptr::null(),
            );
        }
    }
}
