//! The terminal UI: a flow list that follows live traffic or a saved capture, flow
//! details, the filter bar, request-id jumps, the Kinvey summary and support reports.
//!
//! State and update are pure ([`state`], [`update`]); drawing is a pure function of the
//! state ([`view`]); this module is the runtime that feeds events in and carries
//! effects out. The proxy never waits for it: flows arrive on a channel and redraws
//! are coalesced.

pub mod body;
mod editor;
pub mod messages;
pub mod state;
pub mod text;
pub mod update;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{self as terminal_event, Event as TerminalEvent, KeyEventKind};

use crate::capture::{CaptureReader, Detail as LoadDetail, StoredFlow};
use crate::flow::FlowId;
use crate::har::{ExportOptions, HarWriter};
use crate::headless::counted;
use crate::kinvey::{self, report::support_report};
use crate::replay::ReplayRequest;
use state::{App, SourceInfo};
use update::{update, Effect, Event};

/// Redraws for arriving flows come at most this often (10 a second): the terminal and
/// its emulator then cost the proxy under 10% of its throughput (`cargo bench --bench tui`).
/// Keys redraw at once.
const FRAME: Duration = Duration::from_millis(100);

/// How often a capture opened from a file is checked for new flows.
const FILE_POLL: Duration = Duration::from_secs(1);

/// How often the exchanges under way are looked at.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(250);

/// An exchange is listed as under way once it has run this long (most end sooner, and
/// are listed once, finished).
const LISTED_UNDER_WAY_AFTER: Duration = Duration::from_secs(1);

/// Where new flows come from.
pub enum Feed {
    /// Live flows from the recorder, and the exchanges under way.
    Live {
        /// Every finished flow, stored.
        flows: Receiver<StoredFlow>,
        /// The exchanges not finished yet.
        in_flight: crate::events::InFlight,
        /// Sends flows' requests again through the proxy (`R`, `e`), or why it cannot.
        replay: Result<crate::replay::Replayer, String>,
    },
    /// A capture file that may still be growing: polled for flows after the last one.
    File,
}

pub use state::summarize;

/// Fails with what to do instead when there is no terminal to draw the UI on (output
/// piped or redirected, no controlling terminal).
/// `instead` says what to run without one.
pub fn require_terminal(instead: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        return Ok(());
    }
    anyhow::bail!("the terminal UI needs a terminal, and standard output is not one: {instead}")
}

/// Runs the UI until the user quits. `initial` flows are shown first, through `filter`
/// (`--filter`) if there is one.
/// Callers check [`require_terminal`] first, before any work the UI would show.
pub fn run(
    source: SourceInfo,
    initial: Vec<Box<StoredFlow>>,
    feed: Feed,
    filter: Option<crate::filter::Filter>,
) -> anyhow::Result<()> {
    let mut app = App::new(source);
    app.filter = filter;
    for stored in initial {
        app.push(stored);
    }
    let stop = stop_signals();
    let mut terminal = ratatui::try_init().map_err(|e| {
        anyhow::anyhow!("cannot start the terminal UI: {e}; run with --headless instead")
    })?;
    // A paste arrives whole (a filter with a newline in it is not typed, then run).
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::EnableBracketedPaste);
    let result = event_loop(&mut terminal, &mut app, feed, &stop);
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableBracketedPaste);
    // try_restore: restore() prints its failure with eprintln!, which panics when the
    // terminal (and so stderr) is gone.
    let _ = ratatui::try_restore();
    result
}

/// Set when the terminal goes away or kinspect is asked to stop (SIGHUP, SIGTERM): the UI
/// then quits as if `q` were pressed, so the terminal is restored, the capture closed and
/// a HAR's temporary capture removed, where the signal's default would kill the process.
fn stop_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        for signal in [signal_hook::consts::SIGHUP, signal_hook::consts::SIGTERM] {
            let _ = signal_hook::flag::register(signal, stop.clone());
        }
        let _ = detach_from_terminal_on_hangup();
    }
    stop
}

/// Once the terminal has hung up, nothing may touch it. crossterm reads it in a loop that
/// only a "would block" ends (it spins at full CPU on the end of file, or on any other
/// error, and never returns to the UI's loop), and ratatui reports a failed cleanup with
/// `eprintln!`, which panics on the dead terminal and aborts the process before the
/// capture is closed. So on SIGHUP standard input becomes an empty pipe that is never
/// closed (reads would block, crossterm returns, the UI's loop sees the stop flag) and
/// standard output and error go to /dev/null.
#[cfg(unix)]
fn detach_from_terminal_on_hangup() -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let mut ends = [0; 2];
    // SAFETY: pipe(2) fills the two descriptors; fcntl(2) on a descriptor we own.
    unsafe {
        if libc::pipe(ends.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = libc::fcntl(ends[0], libc::F_GETFL);
        libc::fcntl(ends[0], libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    // Both ends and the sink stay open for the life of the process.
    let quiet = ends[0];
    let sink = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")?
        .into_raw_fd();
    // SAFETY: dup2(2) is async-signal-safe; the terminal is gone, so nothing needs the
    // descriptors it replaces.
    unsafe {
        signal_hook::low_level::register(signal_hook::consts::SIGHUP, move || {
            libc::dup2(quiet, libc::STDIN_FILENO);
            libc::dup2(sink, libc::STDOUT_FILENO);
            libc::dup2(sink, libc::STDERR_FILENO);
        })?;
    }
    Ok(())
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    feed: Feed,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut reader: Option<CaptureReader> = None;
    let mut last_poll = Instant::now();
    // A file that can no longer be read (damaged on disk) is not read again.
    let mut file_unreadable = false;
    let mut dirty = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if dirty {
            terminal.draw(|frame| {
                app.page = view::list_page(frame.area());
                app.width = usize::from(frame.area().width);
                view::draw(frame, app);
            })?;
            dirty = false;
        }
        let event = match terminal_event::poll(FRAME) {
            Ok(false) => None,
            Ok(true) => Some(terminal_event::read()),
            Err(e) => Some(Err(e)),
        };
        if let Some(event) = event {
            let event = match event {
                Ok(event) => event,
                // The terminal went away (its standard input closed on SIGHUP).
                Err(_) if stop.load(Ordering::Relaxed) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let event = match event {
                TerminalEvent::Key(key) if key.kind != KeyEventKind::Release => {
                    Some(Event::Key(key))
                }
                TerminalEvent::Paste(text) => Some(Event::Paste(text)),
                TerminalEvent::Resize(columns, _) => Some(Event::Resized(columns.into())),
                _ => None,
            };
            if let Some(event) = event {
                let effects = update(app, event);
                if run_effects(app, effects, &mut reader, &feed, terminal)? {
                    return Ok(());
                }
            }
            dirty = true;
        }
        match &feed {
            Feed::Live {
                flows,
                in_flight,
                replay,
            } => {
                while let Some(outcome) = replay.as_ref().ok().and_then(|r| r.outcome()) {
                    update(app, Event::Replayed(outcome));
                    dirty = true;
                }
                // Listed before the finished flows are taken: a flow that finished since
                // is then taken after, and replaces its listing.
                if last_poll.elapsed() >= IN_FLIGHT_POLL {
                    last_poll = Instant::now();
                    let now = std::time::SystemTime::now();
                    let flows = in_flight.list_started_before(now - LISTED_UNDER_WAY_AFTER);
                    // Rows under way show their running time: redrawn while there are any.
                    dirty |= !flows.is_empty() || !app.in_flight.is_empty();
                    update(app, Event::InFlight { flows, now });
                    if let Some(flow) = newer_under_way(app, in_flight) {
                        let kinvey = Default::default();
                        update(app, Event::Loaded(Box::new(StoredFlow { flow, kinvey })));
                    }
                }
                loop {
                    match flows.try_recv() {
                        Ok(stored) => {
                            let effects = update(app, Event::Flow(Box::new(stored)));
                            run_effects(app, effects, &mut reader, &feed, terminal)?;
                            dirty = true;
                        }
                        Err(TryRecvError::Empty) => break,
                        // The proxy stopped: keep browsing what was captured.
                        Err(TryRecvError::Disconnected) => break,
                    }
                }
            }
            Feed::File if !file_unreadable && last_poll.elapsed() >= FILE_POLL => {
                last_poll = Instant::now();
                let after = app.flows.last().map_or(0, |f| f.flow.id);
                let detail = needed_detail(app);
                let mut new = Vec::new();
                let read = open_reader(app, &mut reader).and_then(|reader| {
                    reader.for_each_after(after, detail, |f| new.push(f))?;
                    Ok(reader.take_left_out())
                });
                match &read {
                    // Rows written damaged since: said as they come (each once).
                    Ok(left_out) if !left_out.is_empty() => {
                        let said = format!(
                            "left out of {}: {}{}",
                            app.source.capture.display(),
                            left_out[0],
                            match left_out.len() {
                                1 => String::new(),
                                n => format!(" (and {} more)", n - 1),
                            }
                        );
                        update(app, Event::Message(said));
                    }
                    _ => {}
                }
                if let Err(e) = read {
                    file_unreadable = true;
                    let said = format!(
                        "new flows are no longer read from {}: {e:#}",
                        app.source.capture.display()
                    );
                    update(app, Event::Message(said));
                }
                dirty |= !new.is_empty() || file_unreadable;
                for stored in new {
                    update(app, Event::Flow(Box::new(stored)));
                }
            }
            Feed::File => {}
        }
    }
}

/// The exchange under way the detail shows (a WebSocket), as it stands now, when it has
/// moved on since shown: switched, or more messages.
fn newer_under_way(app: &App, in_flight: &crate::events::InFlight) -> Option<crate::flow::Flow> {
    let shown = app
        .details()
        .filter(|detail| app.is_in_flight(detail.id))
        .find_map(|detail| detail.flow())?;
    let id = shown.flow.id;
    let shown_progress = |flow: &crate::flow::Flow| {
        let relayed = (
            flow.request.body.wire_size,
            flow.response.as_ref().map_or(0, |r| r.body.wire_size),
        );
        flow.websocket.as_ref().map(|log| log.progress(relayed))
    };
    match (shown_progress(&shown.flow), in_flight.progress(id)) {
        // Still as shown: nothing to copy.
        (Some(shown), Some(now)) if shown == now => None,
        // Not switched yet when shown, or moved on since.
        (_, Some(_)) => in_flight.current(id),
        _ => None,
    }
}

/// How much of each flow the active filter needs.
fn needed_detail(app: &App) -> LoadDetail {
    match &app.filter {
        Some(f) if f.needs_bodies() => LoadDetail::Full,
        _ => LoadDetail::Headers,
    }
}

fn open_reader<'a>(
    app: &App,
    reader: &'a mut Option<CaptureReader>,
) -> anyhow::Result<&'a CaptureReader> {
    if reader.is_none() {
        *reader = Some(CaptureReader::open(&app.source.capture)?);
    }
    Ok(reader.as_ref().expect("just opened"))
}

/// Shows the flows the filter matches, read from the capture; a capture that cannot be
/// read (damaged on disk) clears the filter, and the UI goes on saying why.
fn filter_by_capture(app: &mut App, reader: &mut Option<CaptureReader>) {
    match filter_from_capture(app, reader) {
        Ok(ids) => {
            update(app, Event::Filtered(ids));
        }
        Err(e) => {
            app.filter = None;
            app.refilter();
            let said = format!(
                "the filter was cleared: it could not read {}: {e:#}",
                app.source.capture.display()
            );
            update(app, Event::Message(said));
        }
    }
}

/// The ids of the flows the filter matches, read from the capture (a filter on what the
/// list does not keep: bodies, header values).
fn filter_from_capture(
    app: &App,
    reader: &mut Option<CaptureReader>,
) -> anyhow::Result<std::collections::HashSet<FlowId>> {
    let detail = needed_detail(app);
    let after = app
        .flows
        .get(app.cleared)
        .map_or(0, |f| f.flow.id.saturating_sub(1));
    let reader = open_reader(app, reader)?;
    let mut ids = std::collections::HashSet::new();
    if let Some(filter) = &app.filter {
        reader.for_each_after(after, detail, |stored| {
            if filter.matches(&stored) {
                ids.insert(stored.flow.id);
            }
        })?;
    }
    Ok(ids)
}

/// Carries out effects; true when the UI must quit.
fn run_effects(
    app: &mut App,
    effects: Vec<Effect>,
    reader: &mut Option<CaptureReader>,
    feed: &Feed,
    terminal: &mut ratatui::DefaultTerminal,
) -> anyhow::Result<bool> {
    for effect in effects {
        match effect {
            Effect::Quit => return Ok(true),
            Effect::LoadFlow(id) => {
                let event = match load(app, reader, id) {
                    Ok(stored) => Event::Loaded(Box::new(stored)),
                    Err(message) => {
                        // A detail that cannot load goes back to the list, saying why.
                        let loading = matches!(
                            &app.screen,
                            state::Screen::Detail(detail) if detail.id == id && detail.flow().is_none()
                        );
                        if loading {
                            app.screen = state::Screen::List;
                        }
                        Event::Message(message)
                    }
                };
                update(app, event);
            }
            Effect::FilterFromCapture => filter_by_capture(app, reader),
            Effect::ExportHar { ids, under_way } => {
                let exported =
                    working_dir().and_then(|dir| export_view(app, reader, &ids, under_way, &dir));
                let message = match exported {
                    Ok(message) => message,
                    Err(e) => format!("HAR export failed: {e:#}"),
                };
                update(app, Event::Message(message));
            }
            Effect::Replay { id, edit } => {
                let replayer = match feed {
                    Feed::Live { replay, .. } => replay.as_ref().map_err(String::as_str),
                    Feed::File => Err("a capture file is only read"),
                };
                let message = match send_again(app, reader, replayer, terminal, id, edit) {
                    Ok(message) => message,
                    Err(e) => format!("flow {id} not sent again: {e:#}"),
                };
                update(app, Event::Message(message));
            }
            Effect::CopyCurl(id) => {
                let message = match copy_curl(app, id) {
                    Ok(message) => message,
                    Err(e) => format!("copying failed: {e:#}"),
                };
                update(app, Event::Message(message));
            }
            Effect::SaveBody { id, response } => {
                let saved = working_dir().and_then(|dir| save_body(app, id, response, &dir));
                let message = match saved {
                    Ok(message) => message,
                    Err(e) => format!("saving the body failed: {e:#}"),
                };
                update(app, Event::Message(message));
            }
            Effect::MakeReport(id) => {
                let event = match load(app, reader, id) {
                    Ok(stored) => {
                        let analysis = kinvey::analyze(&stored.flow);
                        // Without the earlier flows' secrets if they cannot be read: the
                        // flow's own are scrubbed still.
                        let mut earlier = reader
                            .as_ref()
                            .and_then(|reader| reader.secrets_before(id).ok())
                            .unwrap_or_default();
                        let warnings = &stored.kinvey.warnings;
                        let text = support_report(&stored.flow, &analysis, warnings, &mut earlier);
                        Event::Report(id, text)
                    }
                    // Said where the report would be, rather than "making..." for good.
                    Err(message) => Event::Report(
                        id,
                        format!("the support report could not be made: {message}"),
                    ),
                };
                update(app, event);
            }
        }
    }
    Ok(false)
}

/// Sends flow `id`'s request again through the proxy, changed in the user's editor
/// first when `edit`. Says what was sent; how it went comes later from the replayer.
fn send_again(
    app: &App,
    reader: &mut Option<CaptureReader>,
    replayer: Result<&crate::replay::Replayer, &str>,
    terminal: &mut ratatui::DefaultTerminal,
    id: FlowId,
    edit: bool,
) -> anyhow::Result<String> {
    let replayer = replayer.map_err(|why| anyhow::anyhow!("{why}"))?;
    let stored = load(app, reader, id).map_err(anyhow::Error::msg)?;
    let mut request = match edit {
        true => ReplayRequest::of(&stored.flow),
        false => ReplayRequest::unchanged_of(&stored.flow),
    }
    .map_err(anyhow::Error::msg)?;
    if edit {
        let original = request.to_text().map_err(anyhow::Error::msg)?;
        let mut text = original.clone();
        // A mistake sends the user back to the editor, their text kept, the error on top.
        request = loop {
            let edited = match editor::edit(terminal, &text, ".http")? {
                editor::Edited::Saved(edited) => edited,
                editor::Edited::Abandoned(why) => {
                    return Ok(format!("flow {id} not sent again: {why}"))
                }
            };
            // Back as it was given, error and all: the user quit without saving.
            // (Line ends and a final newline are an editor's, not a change.)
            let same = |a: &str, b: &str| {
                a.replace("\r\n", "\n").trim_end() == b.replace("\r\n", "\n").trim_end()
            };
            if text != original && same(&edited, &text) {
                return Ok(format!(
                    "flow {id} not sent again: the request still could not be read, and \
                     the editor left it unchanged"
                ));
            }
            match request.edited(&edited) {
                Ok(Some(changed)) => break changed,
                Ok(None) => {
                    let hint = match ReplayRequest::unchanged_of(&stored.flow) {
                        Ok(_) => " (R sends it unchanged)",
                        Err(_) => "",
                    };
                    return Ok(format!(
                        "flow {id} not sent again: the request was left as it was{hint}"
                    ));
                }
                Err(e) => {
                    const SAID: &str = "# kinspect could not read this request: ";
                    let mut kept = edited.as_str();
                    while kept.starts_with(SAID) {
                        kept = kept.split_once('\n').map_or("", |(_, rest)| rest);
                    }
                    text = format!("{SAID}{e}\n{kept}");
                }
            }
        };
    }
    let said = format!(
        "sending flow {id} again: {} {}",
        request.method, request.url
    );
    replayer.send(id, request);
    Ok(said)
}

/// Writes the flows `ids` as a redacted HAR in `dir` (the current directory);
/// `under_way` exchanges of the view were left out.
fn export_view(
    app: &App,
    reader: &mut Option<CaptureReader>,
    ids: &[FlowId],
    under_way: usize,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let stem = |count: usize| format!("{}-{count}-flows", capture_stem(app));
    let (file, path) = new_file(dir, &stem(ids.len()), "har")?;
    let title = app.source.capture.display().to_string();
    let mut writer = HarWriter::new(
        std::io::BufWriter::new(file),
        &title,
        ExportOptions::default(),
    );
    let reader = open_reader(app, reader)?;
    for &id in ids {
        if let Some(stored) = reader.flow(id)? {
            writer.push(&stored)?;
        }
    }
    let stats = writer.finish()?;
    if stats.entries == 0 {
        std::fs::remove_file(&path)?;
        return Ok("nothing exported: blind tunnels hold no HTTP exchange".into());
    }
    // Named for what it holds: blind tunnels hold no HTTP exchange to write.
    let path = match stats.entries == ids.len() as u64 {
        true => path,
        false => {
            let (_, named) = new_file(dir, &stem(stats.entries as usize), "har")?;
            std::fs::rename(&path, &named)?;
            named
        }
    };
    let flows = counted(stats.entries, "flow", "flows");
    let mut left_out = String::new();
    if stats.tunnels_skipped > 0 {
        let tunnels = counted(stats.tunnels_skipped, "blind tunnel", "blind tunnels");
        left_out.push_str(&format!("; {tunnels} left out"));
    }
    if under_way > 0 {
        let exchanges = counted(under_way as u64, "exchange", "exchanges");
        left_out.push_str(&format!("; {exchanges} under way left out"));
    }
    let redacted = counted(stats.redactions, "value", "values");
    Ok(format!(
        "exported {flows} to {} ({redacted} redacted{left_out})",
        path.display()
    ))
}

/// The flow `id` the detail shows, loaded.
fn shown_flow(app: &App, id: FlowId) -> anyhow::Result<&StoredFlow> {
    match &app.screen {
        state::Screen::Detail(detail) if detail.id == id => detail.flow(),
        _ => None,
    }
    .ok_or_else(|| anyhow::anyhow!("flow {id} is not loaded"))
}

/// Copies the request of the detail's flow `id`, as a curl command, to the terminal's
/// clipboard (OSC 52, which most terminals and tmux with `set-clipboard on` honour).
fn copy_curl(app: &App, id: FlowId) -> anyhow::Result<String> {
    let stored = shown_flow(app, id)?;
    let command = crate::curl::curl_command(&stored.flow);
    crossterm::execute!(
        std::io::stdout(),
        crossterm::clipboard::CopyToClipboard::to_clipboard_from(&command)
    )?;
    let body = &stored.flow.request.body;
    let left_out = match body.truncated && body.wire_size > 0 {
        true => "; its body is left out: only part of it was captured (--max-body)",
        false => "",
    };
    Ok(format!(
        "copied flow {id}'s request as a curl command ({} characters) to the clipboard \
         (if your terminal allows OSC 52){left_out}",
        command.chars().count()
    ))
}

/// Writes the request or response body of the detail's flow `id` to a new file in
/// `dir`, its content-encoding undone, named for its content type.
fn save_body(
    app: &App,
    id: FlowId,
    response: bool,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let stored = shown_flow(app, id)?;
    let flow = &stored.flow;
    let (side, body, headers) = match (response, &flow.response) {
        (true, Some(r)) => ("response", &r.body, &r.headers),
        (true, None) => anyhow::bail!("flow {id} has no response"),
        (false, _) => ("request", &flow.request.body, &flow.request.headers),
    };
    if body.bytes.is_empty() {
        match body.wire_size {
            0 => return Ok(format!("nothing to save: flow {id}'s {side} has no body")),
            _ => anyhow::bail!("flow {id}'s {side} body was not kept (--max-body 0?)"),
        }
    }
    let encoding = headers.get("content-encoding");
    let (bytes, decoded) = match body.decoded(encoding.as_deref()) {
        Ok(bytes) => (bytes, encoding.is_some()),
        Err(_) => (body.bytes.clone(), false),
    };
    let extension = extension_for(headers.get("content-type").as_deref());
    let stem = format!("{}-flow-{id}-{side}", capture_stem(app));
    let (mut file, path) = new_file(dir, &stem, &extension)?;
    std::io::Write::write_all(&mut file, &bytes)?;
    let mut message = format!("saved the {side} body ({} bytes", bytes.len());
    if decoded {
        message.push_str(", decoded");
    }
    message.push_str(&format!(") to {}", path.display()));
    if body.truncated {
        message.push_str(&format!(
            "; only its first {} of {} bytes were captured (--max-body)",
            body.bytes.len(),
            body.wire_size
        ));
    }
    Ok(message)
}

/// The file extension for a body of `content_type`: the type's own name when it is a
/// known extension for it (`json`, `html`, `png`), else the usual one of a common type
/// (`txt` for `text/plain`), else its own name when short, else the first one known,
/// else `txt` or `bin`.
fn extension_for(content_type: Option<&str>) -> String {
    let Some(mime) = content_type
        .and_then(|t| t.split(';').next())
        .map(str::trim)
        .filter(|m| !m.contains('*'))
    else {
        return "bin".into();
    };
    let subtype = mime.rsplit(['/', '+']).next().unwrap_or_default();
    // `application/vnd.api+json` is JSON by its suffix.
    let known = mime_guess::get_mime_extensions_str(mime)
        .or_else(|| mime_guess::get_extensions("application", subtype))
        .unwrap_or_default();
    // The list is alphabetical: `text/plain` begins with `asm`.
    const USUAL: [&str; 12] = [
        "txt", "js", "bin", "jpg", "mp3", "mp4", "svg", "csv", "ics", "tif", "gz", "md",
    ];
    let short_name =
        (1..=4).contains(&subtype.len()) && subtype.bytes().all(|b| b.is_ascii_alphanumeric());
    let fallback = if mime.starts_with("text/") {
        "txt"
    } else {
        "bin"
    };
    if let Some(own) = known.iter().find(|e| e.eq_ignore_ascii_case(subtype)) {
        return (*own).into();
    }
    if let Some(usual) = USUAL.iter().find(|usual| known.contains(usual)) {
        return (*usual).into();
    }
    if short_name {
        return subtype.to_ascii_lowercase();
    }
    known.first().copied().unwrap_or(fallback).into()
}

/// The capture's file name without its extension, to name files made from it.
fn capture_stem(app: &App) -> String {
    app.source
        .capture
        .file_stem()
        .map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned())
}

/// The current directory, where `E` and `w` write.
fn working_dir() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_dir().map_err(|e| {
        anyhow::anyhow!(
            "the current directory cannot be used ({e}): was it removed? Start kinspect \
             from a directory it can write in"
        )
    })
}

/// Creates `STEM.EXT` in `dir`, or `STEM-2.EXT` and so on when taken: a file the UI
/// writes never replaces an earlier one.
fn new_file(
    dir: &std::path::Path,
    stem: &str,
    extension: &str,
) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    for attempt in 1.. {
        let name = match attempt {
            1 => format!("{stem}.{extension}"),
            n => format!("{stem}-{n}.{extension}"),
        };
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let said = format!("cannot create {}: {e}", path.display());
                return Err(std::io::Error::new(e.kind(), said));
            }
        }
    }
    unreachable!("the attempts never run out")
}

fn load(app: &App, reader: &mut Option<CaptureReader>, id: FlowId) -> Result<StoredFlow, String> {
    let reader = open_reader(app, reader).map_err(|e| format!("{e:#}"))?;
    match reader.flow(id) {
        Ok(Some(stored)) => Ok(stored),
        Ok(None) => Err(format!("flow {id} is not in the capture yet")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A capture at `path` of flows 1 to `count` (GETs answered 200), each as `shape`
    /// makes it.
    fn capture_of(path: &std::path::Path, count: FlowId, shape: impl Fn(&mut crate::flow::Flow)) {
        let client = "127.0.0.1:40000".parse().unwrap();
        let flows: Vec<StoredFlow> = (1..=count)
            .map(|id| {
                let url = "https://kvy.test/a";
                let mut flow = crate::flow::Flow::exchange(id, client, "GET", url, Some(200));
                shape(&mut flow);
                StoredFlow {
                    flow,
                    kinvey: Default::default(),
                }
            })
            .collect();
        crate::capture::CaptureWriter::open(path)
            .unwrap()
            .write_batch(&flows)
            .unwrap();
    }

    #[test]
    fn a_filter_on_a_capture_that_cannot_be_read_is_cleared_and_the_ui_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("damaged.db");
        capture_of(&capture, 40, |flow| {
            flow.request.body = crate::flow::CapturedBody::whole(vec![b'x'; 3000]);
        });
        // Opened while whole (as the UI does at start), then damaged on disk: every
        // page past the schema's overwritten.
        let mut reader = Some(CaptureReader::open(&capture).unwrap());
        let mut bytes = std::fs::read(&capture).unwrap();
        let schema_pages = 4 * 4096;
        bytes[schema_pages..].fill(0x5a);
        std::fs::write(&capture, bytes).unwrap();
        let mut app = App::new(SourceInfo {
            listen: None,
            capture: capture.clone(),
            ca: None,
            har: None,
            left_out: 0,
        });
        app.filter = Some(crate::filter::Filter::parse("~b Ada").unwrap());
        filter_by_capture(&mut app, &mut reader);
        assert!(app.filter.is_none());
        let said = app.message.clone().unwrap_or_default();
        assert!(
            said.contains("the filter was cleared") && said.contains("the file is damaged"),
            "{said}"
        );
    }

    #[test]
    fn an_export_never_replaces_an_earlier_one() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = new_file(dir.path(), "c-3-flows", "har").unwrap();
        std::fs::write(&first, "earlier export").unwrap();
        let (_, second) = new_file(dir.path(), "c-3-flows", "har").unwrap();
        let (_, third) = new_file(dir.path(), "c-3-flows", "har").unwrap();
        let name = |p: &std::path::Path| p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            [name(&first), name(&second), name(&third)],
            ["c-3-flows.har", "c-3-flows-2.har", "c-3-flows-3.har"]
        );
        assert_eq!(std::fs::read_to_string(&first).unwrap(), "earlier export");
        // A directory it cannot write in is named.
        let gone = dir.path().join("gone");
        let said = new_file(&gone, "c", "har").unwrap_err().to_string();
        assert!(said.contains(&*gone.display().to_string()), "{said}");
    }

    #[test]
    fn an_export_is_named_for_the_flows_it_holds_and_says_what_it_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let capture = dir.path().join("day.db");
        capture_of(&capture, 3, |flow| {
            if flow.id == 3 {
                flow.kind = crate::flow::FlowKind::Tunnel;
            }
        });
        let app = App::new(SourceInfo {
            capture,
            ..SourceInfo::default()
        });
        let said = export_view(&app, &mut None, &[1, 2, 3], 1, dir.path()).unwrap();
        assert!(said.starts_with("exported 2 flows to "), "{said}");
        assert!(said.contains("day-2-flows.har"), "{said}");
        assert!(
            said.contains("; 1 blind tunnel left out; 1 exchange under way left out"),
            "{said}"
        );
        let har: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("day-2-flows.har")).unwrap())
                .unwrap();
        assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
        assert!(!dir.path().join("day-3-flows.har").exists());
        // Only a tunnel: no empty file.
        let said = export_view(&app, &mut None, &[3], 0, dir.path()).unwrap();
        assert!(said.starts_with("nothing exported"), "{said}");
        assert!(!dir.path().join("day-1-flows.har").exists());
    }

    #[test]
    fn the_body_of_the_open_flow_is_saved_decoded_beside_earlier_ones() {
        use crate::flow::{CapturedBody, Flow};
        use std::io::Write;
        let client = "127.0.0.1:40000".parse().unwrap();
        let mut flow = Flow::exchange(7, client, "GET", "http://kvy.test/a", Some(200));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"a\":1}").unwrap();
        let response = flow.response.as_mut().unwrap();
        response.headers = [
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]
        .into_iter()
        .collect();
        response.body = CapturedBody::whole(gz.finish().unwrap());
        let mut app = App::new(SourceInfo {
            capture: "/captures/day.db".into(),
            ..SourceInfo::default()
        });
        let flow = Box::new(StoredFlow {
            flow,
            kinvey: Default::default(),
        });
        app.screen = state::Screen::Detail(state::Detail::new(
            7,
            Some(flow),
            state::Tab::Response,
            None,
        ));
        let dir = tempfile::tempdir().unwrap();
        for name in ["day-flow-7-response.json", "day-flow-7-response-2.json"] {
            let said = save_body(&app, 7, true, dir.path()).unwrap();
            assert!(said.contains("decoded") && said.contains(name), "{said}");
            assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"{\"a\":1}");
        }
        let said = save_body(&app, 7, false, dir.path()).unwrap();
        assert!(
            said.starts_with("nothing to save") && said.contains("no body"),
            "{said}"
        );
    }

    #[test]
    fn a_saved_body_is_named_for_its_content_type() {
        let cases = [
            (Some("application/json; charset=utf-8"), "json"),
            (Some("text/html"), "html"),
            (Some("image/png"), "png"),
            (Some("text/plain"), "txt"),
            (Some("application/xml"), "xml"),
            (Some("application/octet-stream"), "bin"),
            (Some("text/javascript"), "js"),
            (Some("image/jpeg"), "jpeg"),
            (Some("text/csv"), "csv"),
            (Some("application/vnd.api+json"), "json"),
            (Some("text/x-unheard-of"), "txt"),
            (Some("*/*"), "bin"),
            (Some("garbage"), "bin"),
            (None, "bin"),
        ];
        for (content_type, extension) in cases {
            assert_eq!(extension_for(content_type), extension, "{content_type:?}");
        }
    }
}
