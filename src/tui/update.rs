//! The pure update function: one event in, the new state and the effects the runtime
//! must carry out (loading a flow, making a report, quitting) out.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::state::{App, Detail, Prompt, PromptKind, Screen, Tab};
use crate::capture::StoredFlow;
use crate::filter::Filter;
use crate::flow::FlowId;

/// Something that happened.
#[derive(Debug)]
pub enum Event {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal is now this many columns wide.
    Resized(usize),
    /// Text was pasted (bracketed paste): typed into an open prompt, line breaks as
    /// spaces; ignored elsewhere.
    Paste(String),
    /// A new flow was recorded.
    Flow(Box<StoredFlow>),
    /// The exchanges under way long enough to list (oldest first), as of `now`.
    InFlight {
        /// Each as its exchange started.
        flows: Vec<crate::flow::Flow>,
        /// The time.
        now: std::time::SystemTime,
    },
    /// A flow asked for with [`Effect::LoadFlow`], with everything.
    Loaded(Box<StoredFlow>),
    /// A report asked for with [`Effect::MakeReport`].
    Report(FlowId, String),
    /// A line to show (a failure, or what an effect did).
    Message(String),
    /// What came of a request sent again ([`Effect::Replay`]).
    Replayed(crate::replay::ReplayOutcome),
    /// The ids of the flows matching the filter, evaluated on the capture
    /// ([`Effect::FilterFromCapture`]).
    Filtered(std::collections::HashSet<FlowId>),
}

/// Work for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Leave the UI.
    Quit,
    /// Load this flow with its headers and bodies, then send [`Event::Loaded`].
    LoadFlow(FlowId),
    /// Make the support report of this flow, then send [`Event::Report`].
    MakeReport(FlowId),
    /// Evaluate the filter on the flows in the capture (it needs headers or bodies,
    /// which the list does not keep), then send [`Event::Filtered`].
    FilterFromCapture,
    /// Export these flows (the view) as a redacted HAR file, then send a
    /// [`Event::Message`] saying where.
    ExportHar {
        /// The flows, all stored.
        ids: Vec<FlowId>,
        /// Exchanges of the view still under way, left out (not stored yet).
        under_way: usize,
    },
    /// Send flow `id`'s request again through the proxy, after the user has changed it
    /// in an editor when `edit`, then send a [`Event::Message`] saying what was sent
    /// (how it went comes later, from the replayer).
    Replay {
        /// The flow.
        id: FlowId,
        /// Open the request in the user's editor first.
        edit: bool,
    },
    /// Copy the request of the detail's flow `id` as a curl command to the terminal's
    /// clipboard, then send a [`Event::Message`] saying so.
    CopyCurl(FlowId),
    /// Save the body of the detail's flow `id` (its request's, or its response's) to a
    /// file, decoded, then send a [`Event::Message`] saying where.
    SaveBody {
        /// The flow.
        id: FlowId,
        /// The response's body, else the request's.
        response: bool,
    },
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// The detail of flow `id`, shown or under the screen shown.
fn detail_of(app: &mut App, id: FlowId) -> Option<&mut Detail> {
    app.details_mut().find(|detail| detail.id == id)
}

/// The line that says a request sent again (flow `original`'s) was recorded as `flow`.
fn replay_recorded(flow: &crate::flow::Flow, original: FlowId) -> String {
    let said = format!("flow {original} sent again as flow {}", flow.id);
    let took = flow.duration().as_millis();
    match (&flow.response, &flow.error) {
        (Some(r), Some(error)) if r.from_proxy => {
            format!("{said}: {} made by kinspect: {}", r.status, error.message)
        }
        (Some(r), Some(error)) => {
            format!("{said}: {} in {took} ms, then: {}", r.status, error.message)
        }
        (Some(r), None) => format!("{said}: {} in {took} ms", r.status),
        (None, Some(error)) => format!("{said}: failed: {}", error.message),
        (None, None) => format!("{said}: no response"),
    }
}

/// Applies `event` to `app`.
pub fn update(app: &mut App, event: Event) -> Vec<Effect> {
    // Flows may have come and the terminal changed since the list was drawn: the list's
    // top row as drawn, so that the selection moves within it.
    app.scroll_list_to_selection();
    let effects = apply(app, event);
    app.scroll_list_to_selection();
    effects
}

fn apply(app: &mut App, event: Event) -> Vec<Effect> {
    match event {
        Event::Flow(stored) => {
            let id = stored.flow.id;
            // Sent again from this UI (a capture only read has replays of other runs).
            if let (Some(original), Some(_)) = (stored.flow.replay_of, app.source.listen) {
                app.message = Some(replay_recorded(&stored.flow, original));
                let from = stored.flow.client_addr;
                if !app.replays_told.remove(&from) {
                    app.replays_listed.insert(from);
                }
            }
            let finished = app.push(stored);
            // A detail opened while it was under way (shown, or under the help or a
            // report) shows it finished; a report asked for meanwhile is made now.
            let mut effects = Vec::new();
            if finished && detail_of(app, id).is_some() {
                effects.push(Effect::LoadFlow(id));
            }
            if let Screen::Report {
                id: shown,
                text: None,
                ..
            } = &app.screen
            {
                if finished && *shown == id {
                    effects.push(Effect::MakeReport(id));
                }
            }
            effects
        }
        Event::InFlight { flows, now } => {
            app.push_in_flight(flows, now);
            Vec::new()
        }
        Event::Loaded(stored) => {
            let (width, page) = (app.width.max(1), app.page.max(1));
            if let Some(detail) = detail_of(app, stored.flow.id) {
                // Scrolled to the end of a text that grows (an open WebSocket's
                // messages), the detail stays at its end, as `tail -f` does.
                let at_end = detail.flow().is_some()
                    && detail.scroll > 0
                    && detail.scroll >= detail.text(width).last_scroll(page);
                detail.set_flow(stored);
                if at_end {
                    detail.scroll = detail.text(width).last_scroll(page);
                }
            }
            Vec::new()
        }
        Event::Report(id, text) => {
            if let Screen::Report {
                id: shown,
                text: slot,
                ..
            } = &mut app.screen
            {
                if *shown == id {
                    *slot = Some(text);
                }
            }
            Vec::new()
        }
        Event::Message(message) => {
            app.message = Some(message);
            Vec::new()
        }
        Event::Replayed(outcome) => {
            // An answered replay is a flow: the line it got when listed names it, and
            // says more than the replayer can.
            let listed = outcome
                .from
                .is_some_and(|from| app.replays_listed.remove(&from));
            if !(listed && outcome.answered()) {
                app.message = Some(outcome.message());
                if let (Some(from), false) = (outcome.from, listed) {
                    app.replays_told.insert(from);
                }
            }
            Vec::new()
        }
        Event::Filtered(ids) => {
            app.show_ids(&ids);
            Vec::new()
        }
        Event::Resized(width) => {
            // Text views scroll by rows: the text at the top stays at the top (its line,
            // and about as far into a long one).
            let (before, after) = (app.width.max(1), width.max(1));
            app.width = width;
            if before == after {
                return Vec::new();
            }
            for detail in app.details_mut().filter(|d| d.flow().is_some()) {
                let old = detail.text(before);
                let line = old.line_at(detail.scroll);
                let into = detail.scroll - old.starts.get(line).copied().unwrap_or(0);
                let new = detail.text(after);
                let start = new.starts.get(line).copied().unwrap_or(0);
                let end = new.starts.get(line + 1).copied().unwrap_or(new.rows);
                let rows_in = (into * before / after).min(end.saturating_sub(start + 1));
                detail.scroll = start + rows_in;
            }
            Vec::new()
        }
        Event::Paste(text) => {
            if let Some(prompt) = app.prompt.as_mut() {
                for c in text.chars() {
                    prompt.insert(if c.is_control() { ' ' } else { c });
                }
                prompt.error = None;
            }
            Vec::new()
        }
        Event::Key(event) => {
            app.message = None;
            if event.code == KeyCode::Char('c') && event.modifiers.contains(KeyModifiers::CONTROL) {
                return vec![Effect::Quit];
            }
            if std::mem::take(&mut app.asking_to_quit) {
                if let KeyCode::Char('y' | 'Y' | 'q' | 'Q') = event.code {
                    return vec![Effect::Quit];
                }
                app.message = Some("still proxying".into());
                return Vec::new();
            }
            if app.prompt.is_some() {
                return prompt_key(app, event);
            }
            // Outside a prompt keys are plain letters: Ctrl-E is not `e`.
            if event
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
            {
                return Vec::new();
            }
            if event.code == KeyCode::Char('Q') {
                return vec![Effect::Quit];
            }
            match app.screen {
                Screen::List => list_key(app, event),
                Screen::Detail(_) => detail_key(app, event),
                Screen::Help { .. } => help_key(app, event),
                Screen::KinveySummary { .. } => summary_key(app, event),
                Screen::Report { .. } => report_key(app, event),
            }
        }
    }
}

/// Moves the list selection, turning follow off unless it lands on the newest flow.
fn select(app: &mut App, position: usize) {
    app.selected = position.min(app.view.len().saturating_sub(1));
    app.follow = app.selected + 1 >= app.view.len();
}

fn open_prompt(app: &mut App, kind: PromptKind, input: String) {
    app.prompt = Some(Prompt::new(kind, input));
}

fn list_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let page = app.page.max(1);
    match event.code {
        // Quitting stops the proxy the devices use: asked first, as mitmproxy does.
        KeyCode::Char('q') if app.source.listen.is_some() => {
            // Asked on the bottom line for as long as the flag is up, whatever else
            // is said meanwhile.
            app.asking_to_quit = true;
        }
        KeyCode::Char('q') => return vec![Effect::Quit],
        KeyCode::Char('j') | KeyCode::Down => select(app, app.selected + 1),
        KeyCode::Char('k') | KeyCode::Up => select(app, app.selected.saturating_sub(1)),
        KeyCode::Char('g') | KeyCode::Home => select(app, 0),
        KeyCode::Char('G') | KeyCode::End => select(app, usize::MAX),
        KeyCode::PageDown | KeyCode::Char(' ') => select(app, app.selected + page),
        KeyCode::PageUp => select(app, app.selected.saturating_sub(page)),
        KeyCode::Enter => return open_selected(app, Tab::Request, None),
        // `/` searches in a detail; in the list, where it would search, it filters.
        KeyCode::Char('f' | '/') => {
            let current = app.filter.as_ref().map(|f| f.text().to_owned());
            open_prompt(app, PromptKind::Filter, current.unwrap_or_default());
        }
        KeyCode::Char('F') => {
            app.follow = !app.follow;
            if app.follow {
                select(app, usize::MAX);
            }
            app.message = Some(format!("follow {}", if app.follow { "on" } else { "off" }));
        }
        KeyCode::Char('i') => open_prompt(app, PromptKind::RequestId, String::new()),
        KeyCode::Char('z') => {
            app.cleared = app.flows.len();
            app.view.clear();
            app.selected = 0;
            app.kinvey_cell_width = 0;
            app.message = Some("view cleared (the flows stay in the capture)".into());
        }
        KeyCode::Char('K') => {
            app.screen = Screen::KinveySummary {
                rows: app.kinvey_summary(),
                selected: 0,
            };
        }
        KeyCode::Char('?') => open_over(app, Screen::Help { scroll: 0 }),
        KeyCode::Char('E') => {
            if app.view.is_empty() {
                app.message = Some("nothing to export: the view is empty".into());
            } else {
                let (ids, under_way): (Vec<FlowId>, Vec<FlowId>) = app
                    .view
                    .iter()
                    .map(|&i| app.flows[i].flow.id)
                    .partition(|&id| !app.is_in_flight(id));
                if ids.is_empty() {
                    app.message =
                        Some("nothing to export: every exchange listed is under way".into());
                } else {
                    let under_way = under_way.len();
                    return vec![Effect::ExportHar { ids, under_way }];
                }
            }
        }
        KeyCode::Char('r') => {
            if let Some(id) = app.selected_flow().map(|f| f.flow.id) {
                return open_report(app, id);
            }
        }
        KeyCode::Char(key @ ('R' | 'e')) => {
            if let Some(id) = app.selected_flow().map(|f| f.flow.id) {
                return replay(app, id, key == 'e');
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Sends flow `id`'s request again (`R`), or changed in an editor first (`e`): only
/// through a running proxy, and only once the flow has ended.
fn replay(app: &mut App, id: FlowId, edit: bool) -> Vec<Effect> {
    if app.source.listen.is_none() {
        app.message = Some(
            "sending a request again needs the running proxy: this capture is only being read"
                .into(),
        );
        return Vec::new();
    }
    if app.is_in_flight(id) {
        app.message = Some(format!(
            "flow {id} is still under way: send it again once it has ended"
        ));
        return Vec::new();
    }
    vec![Effect::Replay { id, edit }]
}

/// Shows `screen` (a report, the help) over the current one, which `q` returns to.
fn open_over(app: &mut App, screen: Screen) {
    let under = std::mem::replace(&mut app.screen, screen);
    app.behind = Some(Box::new(under));
}

/// Shows flow `id`'s support report (being made) over the current screen.
fn open_report(app: &mut App, id: FlowId) -> Vec<Effect> {
    open_over(
        app,
        Screen::Report {
            id,
            text: None,
            scroll: 0,
        },
    );
    // An exchange under way is reported once it has ended and is stored.
    match app.is_in_flight(id) {
        true => Vec::new(),
        false => vec![Effect::MakeReport(id)],
    }
}

/// Leaves a report or the help for the screen it was opened from.
fn go_back(app: &mut App) {
    app.screen = app.behind.take().map_or(Screen::List, |under| *under);
}

/// Moves a text view's first shown row for a scrolling key; false for other keys. The
/// position stays within `0..=last()`, the row at which the end of the text is in view
/// (counted only for a scrolling key: it lays out the whole text).
fn scroll(
    position: &mut usize,
    event: KeyEvent,
    page: usize,
    last: impl FnOnce() -> usize,
) -> bool {
    let scrolls = matches!(
        event.code,
        KeyCode::Char('j' | 'k' | ' ' | 'g' | 'G')
            | KeyCode::Down
            | KeyCode::Up
            | KeyCode::PageDown
            | KeyCode::PageUp
            | KeyCode::Home
            | KeyCode::End
    );
    if !scrolls {
        return false;
    }
    let last = last();
    match event.code {
        KeyCode::Char('j') | KeyCode::Down => *position += 1,
        KeyCode::Char('k') | KeyCode::Up => *position = position.saturating_sub(1),
        KeyCode::PageDown | KeyCode::Char(' ') => *position += page,
        KeyCode::PageUp => *position = position.saturating_sub(page),
        KeyCode::Char('g') | KeyCode::Home => *position = 0,
        _ => *position = last,
    }
    *position = (*position).min(last);
    true
}

/// The last first-row of `lines` shown `page` rows at a time in `width` columns.
fn last_row(lines: Vec<String>, page: usize, width: usize) -> usize {
    super::text::LaidOutText::new(lines, width).last_scroll(page)
}

fn is_back(event: KeyEvent) -> bool {
    matches!(event.code, KeyCode::Char('q') | KeyCode::Esc)
}

fn detail_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let (page, width) = (app.page.max(1), app.width.max(1));
    let Screen::Detail(detail) = &mut app.screen else {
        return Vec::new();
    };
    if is_back(event) {
        app.screen = Screen::List;
        return Vec::new();
    }
    let mut position = detail.scroll;
    let moved = scroll(&mut position, event, page, || {
        detail.text(width).last_scroll(page)
    });
    detail.scroll = position;
    if moved {
        return Vec::new();
    }
    match event.code {
        KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => {
            detail.tab = detail.tab.next();
            detail.scroll = 0;
        }
        KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => {
            detail.tab = detail.tab.previous();
            detail.scroll = 0;
        }
        KeyCode::Char(c @ '1'..='4') => {
            detail.tab = Tab::ALL[c as usize - '1' as usize];
            detail.scroll = 0;
        }
        KeyCode::Char('v') => {
            detail.body_view = detail.body_view.next();
            detail.scroll = 0;
            app.message = Some(format!("bodies shown as {}", detail.body_view.name()));
        }
        // Opens empty, as in less and vim: Enter on nothing searches the last term again.
        KeyCode::Char('/') => open_prompt(app, PromptKind::Search, String::new()),
        KeyCode::Char('n') => jump_to_match(detail, true, width, &mut app.message),
        KeyCode::Char('N') => jump_to_match(detail, false, width, &mut app.message),
        KeyCode::Char('r') => {
            let id = detail.id;
            return open_report(app, id);
        }
        // The next or previous flow of the list, on the same tab.
        KeyCode::Char(c @ (']' | '[')) => {
            let (tab, search, view) = (detail.tab, detail.search.clone(), detail.body_view);
            let next = match c {
                ']' => app.selected + 1,
                _ => app.selected.wrapping_sub(1),
            };
            if next >= app.view.len() {
                app.message = Some("no more flows that way".into());
                return Vec::new();
            }
            app.selected = next;
            app.follow = false;
            let effects = open_selected(app, tab, search);
            if let Screen::Detail(detail) = &mut app.screen {
                detail.body_view = view;
            }
            return effects;
        }
        KeyCode::Char(key @ ('R' | 'e')) => {
            let id = detail.id;
            return replay(app, id, key == 'e');
        }
        KeyCode::Char('c') if detail.flow().is_some() => {
            return vec![Effect::CopyCurl(detail.id)];
        }
        KeyCode::Char('w') if detail.flow().is_some() => {
            return vec![Effect::SaveBody {
                id: detail.id,
                response: detail.tab != Tab::Request,
            }];
        }
        KeyCode::Char('?') => open_over(app, Screen::Help { scroll: 0 }),
        _ => {}
    }
    Vec::new()
}

/// Opens the detail of the selected flow on `tab`, searching for `search`.
fn open_selected(app: &mut App, tab: Tab, search: Option<String>) -> Vec<Effect> {
    let Some(id) = app.selected_flow().map(|f| f.flow.id) else {
        return Vec::new();
    };
    // One under way is not in the capture yet: the list has it whole.
    let under_way = app
        .is_in_flight(id)
        .then(|| app.selected_flow().cloned().map(Box::new))
        .flatten();
    let load = under_way.is_none();
    app.screen = Screen::Detail(Detail::new(id, under_way, tab, search));
    match load {
        true => vec![Effect::LoadFlow(id)],
        false => Vec::new(),
    }
}

/// Scrolls the detail to the next (or previous) line matching its search term.
fn jump_to_match(detail: &mut Detail, forward: bool, width: usize, message: &mut Option<String>) {
    let Some(term) = detail.search.clone().filter(|t| !t.is_empty()) else {
        *message = Some("no search: press / to search".into());
        return;
    };
    if detail.flow().is_none() {
        return;
    }
    let text = detail.text(width);
    let lines = &text.lines;
    let lower = term.to_lowercase();
    let hits: Vec<usize> = lines
        .iter()
        .zip(text.starts.iter().copied())
        .filter(|(l, _)| l.to_lowercase().contains(&lower))
        .map(|(_, row)| row)
        .collect();
    let found = if forward {
        hits.iter().find(|&&i| i > detail.scroll).or(hits.first())
    } else {
        hits.iter()
            .rev()
            .find(|&&i| i < detail.scroll)
            .or(hits.last())
    };
    let wrapped = match (forward, found) {
        (true, Some(&line)) => line <= detail.scroll,
        (false, Some(&line)) => line >= detail.scroll,
        _ => false,
    };
    // Where it is among the lines that have the term, as vim counts `[2/4]`.
    let place = found.and_then(|line| hits.iter().position(|hit| hit == line));
    let count = |place: usize| format!("{term:?} {}/{}", place + 1, hits.len());
    match place {
        Some(_) if hits.len() == 1 => *message = Some(format!("{term:?}: the only match")),
        Some(place) if wrapped => {
            *message = Some(format!(
                "search wrapped to the {}: {}",
                if forward { "first match" } else { "last match" },
                count(place)
            ))
        }
        Some(place) => *message = Some(count(place)),
        None => {}
    }
    match found {
        Some(&line) => detail.scroll = line,
        // The body's lines past the shown ones were not searched.
        None if lines
            .last()
            .is_some_and(|l| l.ends_with("more lines not shown)")) =>
        {
            *message = Some(format!(
                "{term:?} is not in the lines shown; the body goes on past them: \
                 w saves it whole, or filter with ~b"
            ))
        }
        None => *message = Some(format!("{term:?} not found in this tab")),
    }
}

fn help_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let (page, width) = (app.page.max(1), app.width.max(1));
    if is_back(event) || event.code == KeyCode::Char('?') {
        go_back(app);
    } else if let Screen::Help { scroll: position } = &mut app.screen {
        // The help has no tab row: one row more than a detail's text.
        scroll(position, event, page, || {
            last_row(super::view::help_lines(width), page + 1, width)
        });
    }
    Vec::new()
}

fn report_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let (page, width) = (app.page.max(1), app.width.max(1));
    if is_back(event) {
        go_back(app);
    } else if let Screen::Report {
        scroll: position,
        text,
        ..
    } = &mut app.screen
    {
        let text = text.as_deref().unwrap_or_default();
        scroll(position, event, page, || {
            last_row(text.lines().map(str::to_owned).collect(), page, width)
        });
    }
    Vec::new()
}

fn summary_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let page = app.page.saturating_sub(2).max(1);
    let Screen::KinveySummary { rows, selected } = &mut app.screen else {
        return Vec::new();
    };
    let last = rows.len().saturating_sub(1);
    match event.code {
        KeyCode::Char('q') | KeyCode::Esc | KeyCode::Char('K') => app.screen = Screen::List,
        KeyCode::Char('j') | KeyCode::Down => *selected = (*selected + 1).min(last),
        KeyCode::Char('k') | KeyCode::Up => *selected = selected.saturating_sub(1),
        KeyCode::PageDown => *selected = (*selected + page).min(last),
        KeyCode::PageUp => *selected = selected.saturating_sub(page),
        KeyCode::Char('g') | KeyCode::Home => *selected = 0,
        KeyCode::Char('G') | KeyCode::End => *selected = last,
        KeyCode::Enter => {
            if let Some(row) = rows.get(*selected) {
                // A quote in the name is escaped inside the quoted argument.
                let name = regex::escape(&row.error).replace('\'', "\\'");
                // The rows count the flows of the view: narrow it, do not replace it
                // (nor narrow it again by the same name).
                let clause = format!("~kerr '^{name}$'");
                let text = match app.filter.as_ref().map(Filter::text) {
                    Some(current)
                        if current == clause || current.ends_with(&format!(" & {clause}")) =>
                    {
                        current.to_owned()
                    }
                    Some(current) => format!("({current}) & {clause}"),
                    None => clause,
                };
                app.screen = Screen::List;
                return apply_filter(app, &text).unwrap_or_default();
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Parses and applies a filter (an empty one clears it): the effects to run, or the
/// parse error with a caret under its column.
fn apply_filter(app: &mut App, text: &str) -> Result<Vec<Effect>, String> {
    app.filter = if text.trim().is_empty() {
        None
    } else {
        let filter = Filter::parse(text).map_err(|e| format!("{e}\n{}", e.pointer(text)))?;
        Some(filter)
    };
    if app.filter_needs_capture() {
        return Ok(vec![Effect::FilterFromCapture]);
    }
    app.refilter();
    Ok(Vec::new())
}

fn prompt_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let Some(prompt) = app.prompt.as_mut() else {
        return Vec::new();
    };
    let control = event.modifiers.contains(KeyModifiers::CONTROL);
    // Every edit adds or removes something.
    let length = prompt.input.len();
    match event.code {
        KeyCode::Esc => {
            app.prompt = None;
            return Vec::new();
        }
        // The shell's line editing: Ctrl-H deletes a character, Ctrl-W a word, Ctrl-U
        // and Ctrl-K the line before and after the cursor, Ctrl-A and Ctrl-E go to its
        // start and end; other control and Alt keys type nothing.
        KeyCode::Backspace => prompt.delete_before(),
        KeyCode::Char('h') if control => prompt.delete_before(),
        KeyCode::Delete => prompt.delete_under(),
        KeyCode::Char('w') if control => prompt.delete_word_before(),
        KeyCode::Char('u') if control => prompt.delete_to_start(),
        KeyCode::Char('k') if control => prompt.delete_to_end(),
        KeyCode::Left => prompt.left(),
        KeyCode::Right => prompt.right(),
        KeyCode::Home => prompt.to_start(true),
        KeyCode::Char('a') if control => prompt.to_start(true),
        KeyCode::End => prompt.to_start(false),
        KeyCode::Char('e') if control => prompt.to_start(false),
        KeyCode::Char(_)
            if event
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {}
        KeyCode::Char(c) => prompt.insert(c),
        KeyCode::Enter => {
            let input = prompt.input.clone();
            let outcome = match prompt.kind {
                PromptKind::Filter => apply_filter(app, &input),
                PromptKind::RequestId if input.trim().is_empty() => Ok(Vec::new()),
                PromptKind::RequestId => jump_to_request_id(app, &input),
                PromptKind::Search => {
                    if let Screen::Detail(detail) = &mut app.screen {
                        if !input.is_empty() {
                            detail.search = Some(input);
                        }
                        detail.scroll = 0;
                        jump_to_match(detail, true, app.width.max(1), &mut app.message);
                    }
                    Ok(Vec::new())
                }
            };
            // A refused filter or request id leaves the prompt open, to correct it.
            match outcome {
                Ok(effects) => {
                    app.prompt = None;
                    return effects;
                }
                Err(error) => {
                    if let Some(prompt) = app.prompt.as_mut() {
                        prompt.error = Some(error);
                    }
                }
            }
            return Vec::new();
        }
        _ => {}
    }
    // An edit makes the last input's error stale; moving the cursor does not.
    if let Some(prompt) = app.prompt.as_mut().filter(|p| p.input.len() != length) {
        prompt.error = None;
    }
    Vec::new()
}

/// Opens the flow with this request id (exact, else a unique prefix); why not, if it
/// cannot.
fn jump_to_request_id(app: &mut App, query: &str) -> Result<Vec<Effect>, String> {
    let query = query.trim();
    let exact = app.request_ids.exact(query);
    let id = if let Some(&id) = exact.last() {
        id
    } else {
        let matches = app.request_ids.prefix(query);
        let mut ids: Vec<&str> = matches.iter().map(|(rid, _)| *rid).collect();
        ids.dedup();
        match (ids.len(), matches.last()) {
            (1, Some(&(_, id))) => id,
            (0, _) | (_, None) => {
                return Err(format!("no flow has a request id starting with {query:?}"))
            }
            (n, _) => return Err(format!("{query:?} starts {n} request ids: type more of it")),
        }
    };
    match app.position_of(id) {
        Some(position) => {
            select(app, position);
            Ok(list_key(app, key(KeyCode::Enter)))
        }
        None => Err(format!(
            "flow {id} has that request id but is hidden by the filter or cleared"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CapturedBody, Flow};
    use crate::kinvey::{ErrorClass, KinveySummary};
    use crate::tui::body::BodyView;
    use crate::tui::state::SourceInfo;
    use std::time::{Duration, UNIX_EPOCH};

    fn stored(id: FlowId, status: u16, error: Option<(&str, ErrorClass)>) -> StoredFlow {
        let mut flow = Flow::exchange(
            id,
            "127.0.0.1:5000".parse().unwrap(),
            "GET",
            &format!("https://baas.kinvey.com/appdata/kid_x/books/{id}"),
            Some(status),
        );
        flow.started_at = UNIX_EPOCH + Duration::from_secs(id);
        StoredFlow {
            flow,
            kinvey: KinveySummary {
                request_id: Some(format!("rid{id:04}")),
                error: error.map(|(name, _)| name.to_owned()),
                class: error.map(|(_, class)| class),
                known: true,
                ..KinveySummary::default()
            },
        }
    }

    fn app(n: u64) -> App {
        let mut app = App::new(SourceInfo::default());
        app.page = 3;
        for id in 1..=n {
            let error = (id % 3 == 0).then_some(("EntityNotFound", ErrorClass::Fix));
            let status = if error.is_some() { 404 } else { 200 };
            update(&mut app, Event::Flow(Box::new(stored(id, status, error))));
        }
        app
    }

    fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
        update(app, Event::Key(key(code)))
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            press(app, KeyCode::Char(c));
        }
    }

    #[test]
    fn the_kinvey_column_follows_the_flows_in_view() {
        let mut a = app(3);
        assert_eq!(a.kinvey_cell_width, 10 + "EntityNotFound".len());
        press(&mut a, KeyCode::Char('f'));
        typed(&mut a, "~c 200");
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.kinvey_cell_width, 0, "no Kinvey error in view");
        update(&mut a, Event::Flow(Box::new(stored(4, 200, None))));
        let error = Some(("EntityNotFound", ErrorClass::Fix));
        update(&mut a, Event::Flow(Box::new(stored(5, 404, error))));
        assert_eq!(
            a.kinvey_cell_width, 0,
            "a flow the filter hides takes no room"
        );
        press(&mut a, KeyCode::Char('f'));
        let ctrl_u = KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL);
        update(&mut a, Event::Key(ctrl_u));
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.kinvey_cell_width, 24);
        press(&mut a, KeyCode::Char('z'));
        assert_eq!(a.kinvey_cell_width, 0, "cleared");
    }

    #[test]
    fn q_asks_before_stopping_a_live_proxy() {
        let mut a = app(3);
        a.source.listen = Some("127.0.0.1:8080".parse().unwrap());
        assert_eq!(press(&mut a, KeyCode::Char('q')), []);
        assert!(a.asking_to_quit);
        // Something said meanwhile does not take the question's place.
        update(&mut a, Event::Message("exported".into()));
        assert!(a.asking_to_quit);
        // Anything but yes keeps the proxy running.
        assert_eq!(press(&mut a, KeyCode::Char('n')), []);
        assert_eq!(a.message.as_deref(), Some("still proxying"));
        assert_eq!(press(&mut a, KeyCode::Char('j')), []);
        assert_eq!(a.screen, Screen::List);
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(press(&mut a, KeyCode::Char('y')), [Effect::Quit]);
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(press(&mut a, KeyCode::Char('q')), [Effect::Quit], "q q");
        assert_eq!(press(&mut a, KeyCode::Char('Q')), [Effect::Quit], "at once");
    }

    #[test]
    fn the_selection_moves_within_the_page_and_the_list_scrolls_at_its_edges() {
        let mut a = app(10);
        // Following: the newest flow on the page's last row.
        assert_eq!((a.selected, a.top), (9, 7));
        press(&mut a, KeyCode::Char('k'));
        press(&mut a, KeyCode::Char('k'));
        assert_eq!(
            (a.selected, a.top),
            (7, 7),
            "the cursor moved, not the list"
        );
        press(&mut a, KeyCode::Char('k'));
        assert_eq!((a.selected, a.top), (6, 6), "scrolled at the top edge");
        press(&mut a, KeyCode::Char('j'));
        assert_eq!((a.selected, a.top), (7, 6));
        press(&mut a, KeyCode::Char('g'));
        assert_eq!((a.selected, a.top), (0, 0));
        // A filter that shows fewer flows fills the page from the top.
        press(&mut a, KeyCode::Char('G'));
        press(&mut a, KeyCode::Char('f'));
        typed(&mut a, "~c 404");
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.view.len(), 3);
        assert_eq!(a.top, 0);
    }

    #[test]
    fn a_report_asked_for_under_way_is_made_once_the_exchange_has_ended() {
        let mut a = app(2);
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = "https://baas.kinvey.com/rpc/kid_x/custom/slow";
        let flows = vec![Flow::exchange(3, client, "POST", url, None)];
        let now = UNIX_EPOCH + Duration::from_secs(60);
        update(&mut a, Event::InFlight { flows, now });
        press(&mut a, KeyCode::Char('G'));
        assert_eq!(press(&mut a, KeyCode::Char('r')), [], "not stored yet");
        assert!(matches!(
            a.screen,
            Screen::Report {
                id: 3,
                text: None,
                ..
            }
        ));
        let effects = update(&mut a, Event::Flow(Box::new(stored(3, 500, None))));
        assert_eq!(effects, [Effect::MakeReport(3)]);
    }

    #[test]
    fn exchanges_under_way_are_listed_then_replaced_where_they_stand() {
        let mut a = app(2);
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = "https://baas.kinvey.com/rpc/kid_x/custom/slow";
        let mut slow = Flow::exchange(3, client, "POST", url, None);
        slow.request.headers = [("x-kinvey-api-version", "5")].into_iter().collect();
        let now = UNIX_EPOCH + Duration::from_secs(60);
        for _ in 0..2 {
            let flows = vec![slow.clone()];
            update(&mut a, Event::InFlight { flows, now });
        }
        assert_eq!(a.flows.len(), 3, "listed once");
        assert_eq!(a.clock, now);
        // Listed again once it switched (a WebSocket): in its place, with its 101.
        let mut switched = slow.clone();
        switched.response = Flow::exchange(3, client, "GET", url, Some(101)).response;
        update(
            &mut a,
            Event::InFlight {
                flows: vec![switched],
                now,
            },
        );
        assert_eq!((a.flows.len(), a.flows[2].flow.status()), (3, Some(101)));
        update(
            &mut a,
            Event::InFlight {
                flows: vec![slow.clone()],
                now,
            },
        );
        // An export leaves it out (it is not stored yet), and says so.
        let export = press(&mut a, KeyCode::Char('E'));
        let expected = Effect::ExportHar {
            ids: vec![1, 2],
            under_way: 1,
        };
        assert_eq!(export, [expected]);
        apply_filter(&mut a, "~q").unwrap();
        assert_eq!(press(&mut a, KeyCode::Char('E')), []);
        assert!(a.message.as_ref().unwrap().contains("under way"));
        assert_eq!(a.view, [2], "~q: no response yet");
        update(&mut a, Event::Flow(Box::new(stored(4, 200, None))));
        assert_eq!(a.view, [2]);

        // Its detail opens from the list: it is not in the capture yet.
        a.selected = 0;
        assert_eq!(press(&mut a, KeyCode::Enter), []);
        let Screen::Detail(detail) = &a.screen else {
            panic!("{:?}", a.screen)
        };
        let shown = detail.flow().expect("shown at once");
        assert_eq!(shown.flow.request.headers.len(), 1, "whole, not a summary");

        // It finishes while the help is over its detail: in its place, filtered again,
        // and the detail reloads.
        press(&mut a, KeyCode::Char('?'));
        let effects = update(&mut a, Event::Flow(Box::new(stored(3, 500, None))));
        assert_eq!(effects, [Effect::LoadFlow(3)]);
        update(&mut a, Event::Loaded(Box::new(stored(3, 500, None))));
        press(&mut a, KeyCode::Char('q'));
        let Screen::Detail(detail) = &a.screen else {
            panic!("{:?}", a.screen)
        };
        let shown = detail.flow().unwrap();
        assert_eq!(shown.flow.status(), Some(500), "the finished flow");
        assert_eq!(a.flows[2].flow.status(), Some(500));
        assert!(!a.is_in_flight(3));
        assert!(a.view.is_empty(), "no longer ~q");
        apply_filter(&mut a, "").unwrap();
        let ids: Vec<FlowId> = a.view.iter().map(|&i| a.flows[i].flow.id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);

        // Listed, then the view cleared (z): it finishes as a new row.
        press(&mut a, KeyCode::Char('q'));
        let slow = Flow::exchange(5, client, "GET", url, None);
        let flows = vec![slow];
        update(&mut a, Event::InFlight { flows, now });
        press(&mut a, KeyCode::Char('z'));
        update(&mut a, Event::Flow(Box::new(stored(6, 200, None))));
        update(&mut a, Event::Flow(Box::new(stored(5, 200, None))));
        let ids: Vec<FlowId> = a.view.iter().map(|&i| a.flows[i].flow.id).collect();
        assert_eq!(ids, [6, 5]);
    }

    #[test]
    fn brackets_step_the_detail_to_the_next_and_previous_flow_on_the_same_tab() {
        let mut a = app(3);
        press(&mut a, KeyCode::Char('g'));
        assert_eq!(press(&mut a, KeyCode::Enter), [Effect::LoadFlow(1)]);
        press(&mut a, KeyCode::Char('2'));
        assert_eq!(press(&mut a, KeyCode::Char(']')), [Effect::LoadFlow(2)]);
        let Screen::Detail(detail) = &a.screen else {
            panic!("{:?}", a.screen)
        };
        assert_eq!((detail.id, detail.tab), (2, Tab::Response));
        assert_eq!(press(&mut a, KeyCode::Char('[')), [Effect::LoadFlow(1)]);
        assert_eq!(press(&mut a, KeyCode::Char('[')), []);
        assert_eq!(a.message.as_deref(), Some("no more flows that way"));
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(a.selected, 0, "the list is on the flow last shown");
    }

    #[test]
    fn w_saves_the_body_of_the_tab_shown_once_loaded() {
        let mut a = app(3);
        press(&mut a, KeyCode::Enter);
        assert_eq!(press(&mut a, KeyCode::Char('w')), [], "not loaded yet");
        assert_eq!(press(&mut a, KeyCode::Char('c')), []);
        update(&mut a, Event::Loaded(Box::new(stored(3, 200, None))));
        assert_eq!(
            press(&mut a, KeyCode::Char('w')),
            [Effect::SaveBody {
                id: 3,
                response: false
            }]
        );
        press(&mut a, KeyCode::Char('2'));
        assert_eq!(
            press(&mut a, KeyCode::Char('w')),
            [Effect::SaveBody {
                id: 3,
                response: true
            }]
        );
        assert_eq!(press(&mut a, KeyCode::Char('c')), [Effect::CopyCurl(3)]);
    }

    #[test]
    fn r_and_e_send_the_flow_again_only_through_a_running_proxy() {
        let mut a = app(3);
        let said = |a: &App| a.message.clone().unwrap_or_default();
        assert_eq!(press(&mut a, KeyCode::Char('R')), []);
        assert!(said(&a).contains("needs the running proxy"), "{}", said(&a));
        a.source.listen = Some("127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            press(&mut a, KeyCode::Char('R')),
            [Effect::Replay { id: 3, edit: false }]
        );
        let ctrl_e = KeyEvent::new(KeyCode::Char('e'), KeyModifiers::CONTROL);
        assert_eq!(update(&mut a, Event::Key(ctrl_e)), [], "Ctrl-E is not e");
        press(&mut a, KeyCode::Char('k'));
        assert_eq!(
            press(&mut a, KeyCode::Char('e')),
            [Effect::Replay { id: 2, edit: true }]
        );
        // From the detail too, before its flow is loaded (the runtime loads it).
        press(&mut a, KeyCode::Enter);
        assert_eq!(
            press(&mut a, KeyCode::Char('e')),
            [Effect::Replay { id: 2, edit: true }]
        );
        // Not while it is under way: its request is not whole yet.
        press(&mut a, KeyCode::Char('q'));
        let now = UNIX_EPOCH + Duration::from_secs(100);
        update(
            &mut a,
            Event::InFlight {
                flows: vec![stored(4, 200, None).flow],
                now,
            },
        );
        press(&mut a, KeyCode::Char('G'));
        assert_eq!(press(&mut a, KeyCode::Char('R')), []);
        assert!(said(&a).contains("still under way"), "{}", said(&a));
    }

    #[test]
    fn v_changes_how_bodies_are_shown_and_the_next_flow_keeps_it() {
        let mut a = app(3);
        press(&mut a, KeyCode::Char('k'));
        press(&mut a, KeyCode::Enter);
        let mut full = stored(2, 200, None);
        full.flow.response.as_mut().unwrap().body = CapturedBody::whole(&br#"{"a":1}"#[..]);
        update(&mut a, Event::Loaded(Box::new(full)));
        press(&mut a, KeyCode::Char('2'));
        assert!(
            shown(&a).contains(&"  \"a\": 1".to_owned()),
            "{:?}",
            shown(&a)
        );
        press(&mut a, KeyCode::Char('v'));
        assert_eq!(a.message.as_deref(), Some("bodies shown as text"));
        assert!(
            shown(&a).contains(&r#"{"a":1}"#.to_owned()),
            "{:?}",
            shown(&a)
        );
        press(&mut a, KeyCode::Char('v'));
        assert!(shown(&a)
            .iter()
            .any(|l| l.starts_with("00000000  7b 22 61")));
        press(&mut a, KeyCode::Char(']'));
        let Screen::Detail(detail) = &a.screen else {
            panic!("{:?}", a.screen)
        };
        assert_eq!(
            (detail.id, detail.tab, detail.body_view),
            (3, Tab::Response, BodyView::Hex)
        );
    }

    #[test]
    fn a_resize_keeps_the_line_at_the_top_of_the_detail() {
        let mut a = app(3);
        a.width = 20;
        press(&mut a, KeyCode::Enter);
        let mut full = stored(3, 200, None);
        let body: String = (0..50)
            .map(|i| format!("L{i:03} {}\n", "x".repeat(50)))
            .collect();
        full.flow.response.as_mut().unwrap().body = CapturedBody::whole(body.into_bytes());
        update(&mut a, Event::Loaded(Box::new(full)));
        press(&mut a, KeyCode::Char('2'));
        for _ in 0..40 {
            press(&mut a, KeyCode::Char('j'));
        }
        let top = |a: &App| match &a.screen {
            Screen::Detail(d) => {
                let text = d.text(a.width);
                text.lines[text.line_at(d.scroll)].clone()
            }
            _ => panic!("not in the detail"),
        };
        let before = top(&a);
        assert!(before.starts_with("L0"), "{before}");
        update(&mut a, Event::Resized(70));
        assert_eq!(a.width, 70);
        assert_eq!(top(&a), before);
        update(&mut a, Event::Resized(9));
        assert_eq!(top(&a), before);
        // Deep in one long line, about as far in; a height-only resize moves nothing.
        let mut long = stored(3, 200, None);
        long.flow.response.as_mut().unwrap().body =
            CapturedBody::whole(format!("{}END", "x".repeat(2000)).into_bytes());
        update(&mut a, Event::Loaded(Box::new(long)));
        update(&mut a, Event::Resized(20));
        for _ in 0..60 {
            press(&mut a, KeyCode::Char('j'));
        }
        let scroll = |a: &App| match &a.screen {
            Screen::Detail(d) => d.scroll,
            _ => panic!("not in the detail"),
        };
        let line_start = |a: &App, width: usize| match &a.screen {
            Screen::Detail(d) => {
                let text = d.text(width);
                text.starts[text.line_at(d.scroll)]
            }
            _ => panic!("not in the detail"),
        };
        let (deep, start) = (scroll(&a), line_start(&a, 20));
        assert!(deep - start > 10, "inside the long line");
        update(&mut a, Event::Resized(20));
        assert_eq!(scroll(&a), deep);
        update(&mut a, Event::Resized(40));
        assert_eq!(scroll(&a) - line_start(&a, 40), (deep - start) / 2);
    }

    #[test]
    fn a_detail_scrolled_to_its_end_stays_there_as_the_flow_grows() {
        let mut a = app(3);
        a.width = 80;
        press(&mut a, KeyCode::Enter);
        let with_lines = |n: usize| {
            let mut full = stored(3, 200, None);
            let body: String = (0..n).map(|i| format!("line {i}\n")).collect();
            full.flow.response.as_mut().unwrap().body = CapturedBody::whole(body.into_bytes());
            Box::new(full)
        };
        update(&mut a, Event::Loaded(with_lines(20)));
        press(&mut a, KeyCode::Char('2'));
        press(&mut a, KeyCode::Char('G'));
        let scroll = |a: &App| match &a.screen {
            Screen::Detail(d) => (d.scroll, d.text(a.width).last_scroll(a.page)),
            _ => panic!("not in the detail"),
        };
        let (at, last) = scroll(&a);
        assert_eq!(at, last);
        update(&mut a, Event::Loaded(with_lines(30)));
        assert_eq!(scroll(&a), (last + 10, last + 10), "followed");
        press(&mut a, KeyCode::Char('k'));
        update(&mut a, Event::Loaded(with_lines(40)));
        assert_eq!(scroll(&a).0, last + 9, "not at the end: left where it was");
    }

    #[test]
    fn new_flows_are_followed_until_the_user_moves() {
        let mut a = app(5);
        assert_eq!(a.selected, 4);
        press(&mut a, KeyCode::Char('k'));
        assert_eq!(a.selected, 3);
        assert!(!a.follow);
        update(&mut a, Event::Flow(Box::new(stored(6, 200, None))));
        assert_eq!(a.selected, 3, "not following: the selection stays");
        press(&mut a, KeyCode::Char('F'));
        assert!(a.follow);
        assert_eq!(a.selected, 5);
        assert_eq!(a.message.as_deref(), Some("follow on"));
    }

    #[test]
    fn movement_keys() {
        let mut a = app(10);
        press(&mut a, KeyCode::Char('g'));
        assert_eq!(a.selected, 0);
        press(&mut a, KeyCode::Char('j'));
        press(&mut a, KeyCode::Down);
        assert_eq!(a.selected, 2);
        press(&mut a, KeyCode::Up);
        assert_eq!(a.selected, 1);
        press(&mut a, KeyCode::PageDown);
        assert_eq!(a.selected, 4, "a page is 3 rows");
        press(&mut a, KeyCode::PageUp);
        assert_eq!(a.selected, 1);
        press(&mut a, KeyCode::Char('G'));
        assert_eq!(a.selected, 9);
        press(&mut a, KeyCode::Char('j'));
        assert_eq!(a.selected, 9, "clamped at the end");
        press(&mut a, KeyCode::Home);
        press(&mut a, KeyCode::End);
        assert_eq!(a.selected, 9);
    }

    #[test]
    fn enter_opens_the_detail_and_asks_for_the_flow() {
        let mut a = app(3);
        press(&mut a, KeyCode::Char('g'));
        assert_eq!(press(&mut a, KeyCode::Enter), [Effect::LoadFlow(1)]);
        let Screen::Detail(detail) = &a.screen else {
            panic!()
        };
        assert_eq!((detail.id, detail.tab), (1, Tab::Request));
        update(&mut a, Event::Loaded(Box::new(stored(1, 200, None))));
        let Screen::Detail(detail) = &a.screen else {
            panic!()
        };
        assert!(detail.flow().is_some());
        // A late answer for another flow is ignored.
        update(&mut a, Event::Loaded(Box::new(stored(2, 200, None))));
        let Screen::Detail(detail) = &a.screen else {
            panic!()
        };
        assert_eq!(detail.flow().unwrap().flow.id, 1);
    }

    /// The lines the detail shows now.
    fn shown(a: &App) -> Vec<String> {
        match &a.screen {
            Screen::Detail(d) => d.text(a.width).lines.to_vec(),
            _ => panic!("not in the detail"),
        }
    }

    #[test]
    fn detail_tabs_scrolling_and_back() {
        let mut a = app(3);
        press(&mut a, KeyCode::Enter);
        let tab = |a: &App| match &a.screen {
            Screen::Detail(d) => (d.tab, d.scroll),
            _ => panic!("not in the detail"),
        };
        press(&mut a, KeyCode::Tab);
        assert_eq!(tab(&a), (Tab::Response, 0));
        press(&mut a, KeyCode::Char('l'));
        press(&mut a, KeyCode::Right);
        assert_eq!(tab(&a).0, Tab::Timing);
        press(&mut a, KeyCode::Tab);
        assert_eq!(tab(&a).0, Tab::Request, "wraps");
        press(&mut a, KeyCode::BackTab);
        press(&mut a, KeyCode::Char('h'));
        press(&mut a, KeyCode::Left);
        assert_eq!(tab(&a).0, Tab::Response);
        press(&mut a, KeyCode::Char('3'));
        assert_eq!(tab(&a).0, Tab::Kinvey);
        // Scrolling moves by screen rows and stops where the end is in view.
        let mut full = stored(3, 200, None);
        let body: String = (0..40).map(|i| format!("line {i}\n")).collect();
        full.flow.response.as_mut().unwrap().body = CapturedBody::whole(body.into_bytes());
        update(&mut a, Event::Loaded(Box::new(full)));
        press(&mut a, KeyCode::Char('2'));
        press(&mut a, KeyCode::Char('j'));
        press(&mut a, KeyCode::PageDown);
        assert_eq!(tab(&a).1, 4);
        press(&mut a, KeyCode::Char('k'));
        assert_eq!(tab(&a).1, 3);
        press(&mut a, KeyCode::Char('G'));
        let last = tab(&a).1;
        let rows = super::super::text::LaidOutText::new(shown(&a), a.width).rows;
        assert_eq!(last, rows - a.page, "the end in view, no further");
        press(&mut a, KeyCode::Char('j'));
        assert_eq!(tab(&a).1, last);
        press(&mut a, KeyCode::Char('k'));
        assert_eq!(tab(&a).1, last - 1, "one key back up, at once");
        press(&mut a, KeyCode::Char('g'));
        assert_eq!(tab(&a).1, 0);
        // A line longer than the width takes several rows, each reached by scrolling.
        a.width = 20;
        let mut long = stored(3, 200, None);
        long.flow.response.as_mut().unwrap().body =
            CapturedBody::whole(format!("{}END", "x".repeat(200)).into_bytes());
        update(&mut a, Event::Loaded(Box::new(long)));
        press(&mut a, KeyCode::Char('G'));
        let rows = super::super::text::LaidOutText::new(shown(&a), a.width).rows;
        assert!(rows > shown(&a).len() + 9, "the long body wraps");
        assert_eq!(tab(&a).1, rows - a.page);
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.screen, Screen::List);
        press(&mut a, KeyCode::Enter);
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(a.screen, Screen::List);
    }

    #[test]
    fn a_search_past_the_lines_shown_says_the_body_goes_on() {
        let mut a = app(3);
        press(&mut a, KeyCode::Enter);
        let mut full = stored(3, 200, None);
        let last = crate::tui::body::MAX_BODY_LINES + 10;
        let text: String = (0..=last).map(|i| format!("line {i}\n")).collect();
        full.flow.response.as_mut().unwrap().body = CapturedBody::whole(text);
        update(&mut a, Event::Loaded(Box::new(full)));
        press(&mut a, KeyCode::Char('2'));
        press(&mut a, KeyCode::Char('/'));
        typed(&mut a, &format!("line {last}"));
        press(&mut a, KeyCode::Enter);
        let said = a.message.clone().unwrap_or_default();
        assert!(said.contains("goes on past them"), "{said}");
    }

    #[test]
    fn search_in_the_detail_jumps_between_matches() {
        let mut a = app(3);
        press(&mut a, KeyCode::Enter);
        let mut full = stored(3, 404, Some(("EntityNotFound", ErrorClass::Fix)));
        full.flow.response.as_mut().unwrap().body =
            CapturedBody::whole(&b"alpha\nneedle one\nbeta\nNEEDLE two\ngamma"[..]);
        update(&mut a, Event::Loaded(Box::new(full)));
        press(&mut a, KeyCode::Char('2'));
        press(&mut a, KeyCode::Char('n'));
        assert_eq!(a.message.as_deref(), Some("no search: press / to search"));
        press(&mut a, KeyCode::Char('/'));
        typed(&mut a, "needle");
        press(&mut a, KeyCode::Enter);
        let scroll = |a: &App| match &a.screen {
            Screen::Detail(d) => d.scroll,
            _ => panic!(),
        };
        let first = scroll(&a);
        assert_eq!(a.message.as_deref(), Some("\"needle\" 1/2"));
        press(&mut a, KeyCode::Char('n'));
        let second = scroll(&a);
        assert!(second > first, "{first} then {second}");
        assert_eq!(a.message.as_deref(), Some("\"needle\" 2/2"));
        press(&mut a, KeyCode::Char('n'));
        assert_eq!(scroll(&a), first, "wraps around");
        assert_eq!(
            a.message.as_deref(),
            Some("search wrapped to the first match: \"needle\" 1/2")
        );
        press(&mut a, KeyCode::Char('N'));
        assert_eq!(scroll(&a), second);
        assert_eq!(
            a.message.as_deref(),
            Some("search wrapped to the last match: \"needle\" 2/2")
        );
        // The prompt opens empty; Enter on nothing searches the last term again.
        press(&mut a, KeyCode::Char('/'));
        assert_eq!(a.prompt.as_ref().unwrap().input, "");
        press(&mut a, KeyCode::Enter);
        assert!(matches!(&a.screen, Screen::Detail(d) if d.search.as_deref() == Some("needle")));
        assert_eq!(scroll(&a), first);
        press(&mut a, KeyCode::Char('/'));
        typed(&mut a, "Missing");
        press(&mut a, KeyCode::Enter);
        assert_eq!(
            a.message.as_deref(),
            Some("\"Missing\" not found in this tab"),
            "the term as typed"
        );
        press(&mut a, KeyCode::Char('/'));
        typed(&mut a, "gamma");
        press(&mut a, KeyCode::Enter);
        let only = scroll(&a);
        press(&mut a, KeyCode::Char('n'));
        assert_eq!(scroll(&a), only);
        assert_eq!(a.message.as_deref(), Some("\"gamma\": the only match"));
    }

    #[test]
    fn a_report_or_the_help_opened_from_a_detail_goes_back_to_it() {
        let mut a = app(3);
        press(&mut a, KeyCode::Enter);
        press(&mut a, KeyCode::Char('3'));
        let in_kinvey_tab =
            |a: &App| matches!(&a.screen, Screen::Detail(d) if d.tab == Tab::Kinvey);
        assert!(in_kinvey_tab(&a));
        assert_eq!(
            press(&mut a, KeyCode::Char('r')).len(),
            1,
            "a report is made"
        );
        assert!(matches!(a.screen, Screen::Report { .. }));
        press(&mut a, KeyCode::Char('q'));
        assert!(in_kinvey_tab(&a), "{:?}", a.screen);
        press(&mut a, KeyCode::Char('?'));
        assert!(matches!(a.screen, Screen::Help { .. }));
        press(&mut a, KeyCode::Esc);
        assert!(in_kinvey_tab(&a));
        press(&mut a, KeyCode::Char('q'));
        press(&mut a, KeyCode::Char('?'));
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(a.screen, Screen::List, "from the list, back to the list");
    }

    #[test]
    fn prompts_edit_like_a_shell_line_and_control_keys_type_nothing() {
        let mut a = app(3);
        press(&mut a, KeyCode::Char('f'));
        typed(&mut a, "~k & ~c 5xx");
        let ctrl = |a: &mut App, c: char| {
            update(
                a,
                Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
            )
        };
        let input = |a: &App| a.prompt.as_ref().unwrap().input.clone();
        ctrl(&mut a, 'w');
        assert_eq!(input(&a), "~k & ~c ");
        ctrl(&mut a, 'h');
        ctrl(&mut a, 'b');
        update(
            &mut a,
            Event::Key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::ALT)),
        );
        assert_eq!(input(&a), "~k & ~c");
        ctrl(&mut a, 'u');
        assert_eq!(input(&a), "");
    }

    #[test]
    fn a_paste_goes_into_the_prompt_whole() {
        let mut a = app(3);
        update(&mut a, Event::Paste("~c 4xx\n~k".into()));
        assert_eq!(a.screen, Screen::List, "no prompt: nothing happens");
        assert!(a.prompt.is_none());
        press(&mut a, KeyCode::Char('f'));
        update(&mut a, Event::Paste("~c 4xx\n& ~k".into()));
        let prompt = a.prompt.as_ref().unwrap();
        assert_eq!(prompt.input, "~c 4xx & ~k");
        assert_eq!(prompt.cursor, prompt.input.len());
    }

    #[test]
    fn the_prompt_cursor_steps_over_whole_characters() {
        let mut a = app(1);
        press(&mut a, KeyCode::Char('f'));
        let input = |a: &App| a.prompt.as_ref().map(|p| (p.input.clone(), p.cursor));
        // `e` + a combining accent, and a thumb with its skin tone: one step each.
        typed(&mut a, "e\u{301}👍🏽");
        press(&mut a, KeyCode::Left);
        assert_eq!(input(&a).unwrap().1, "e\u{301}".len());
        press(&mut a, KeyCode::Left);
        assert_eq!(input(&a).unwrap().1, 0);
        press(&mut a, KeyCode::Delete);
        assert_eq!(input(&a).unwrap(), ("👍🏽".to_owned(), 0));
        press(&mut a, KeyCode::End);
        press(&mut a, KeyCode::Backspace);
        assert_eq!(input(&a).unwrap(), (String::new(), 0));
    }

    #[test]
    fn the_prompt_cursor_moves_and_edits_where_it_stands() {
        let mut a = app(3);
        press(&mut a, KeyCode::Char('f'));
        typed(&mut a, "~c 5xx");
        let input = |a: &App| a.prompt.as_ref().unwrap().input.clone();
        let ctrl = |a: &mut App, c: char| {
            update(
                a,
                Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)),
            )
        };
        // To the start: insert there.
        press(&mut a, KeyCode::Home);
        typed(&mut a, "~k & ");
        assert_eq!(input(&a), "~k & ~c 5xx");
        // Word and line deletions stop at the cursor.
        ctrl(&mut a, 'w');
        assert_eq!(input(&a), "~k ~c 5xx");
        ctrl(&mut a, 'k');
        assert_eq!(input(&a), "~k ");
        typed(&mut a, "~c 5xx");
        // Left over a multi-byte character, Delete under the cursor, Backspace before it.
        ctrl(&mut a, 'a');
        typed(&mut a, "é");
        press(&mut a, KeyCode::Left);
        press(&mut a, KeyCode::Delete);
        assert_eq!(input(&a), "~k ~c 5xx");
        press(&mut a, KeyCode::End);
        press(&mut a, KeyCode::Left);
        press(&mut a, KeyCode::Backspace);
        assert_eq!(input(&a), "~k ~c 5x");
        press(&mut a, KeyCode::Right);
        press(&mut a, KeyCode::Right);
        typed(&mut a, "x");
        assert_eq!(input(&a), "~k ~c 5xx");
        ctrl(&mut a, 'e');
        press(&mut a, KeyCode::Left);
        press(&mut a, KeyCode::Left);
        ctrl(&mut a, 'u');
        assert_eq!(input(&a), "xx");
        typed(&mut a, "(");
        press(&mut a, KeyCode::Enter);
        assert!(a.prompt.is_some(), "(xx is not a filter: the error shows");
        assert!(a.prompt.as_ref().unwrap().error.is_some());
        press(&mut a, KeyCode::Left);
        assert!(
            a.prompt.as_ref().unwrap().error.is_some(),
            "a move keeps it"
        );
        press(&mut a, KeyCode::Delete);
        assert!(
            a.prompt.as_ref().unwrap().error.is_none(),
            "an edit clears it"
        );
    }

    #[test]
    fn the_filter_prompt_filters_shows_errors_and_clears() {
        let mut a = app(9);
        press(&mut a, KeyCode::Char('f'));
        typed(&mut a, "~k");
        press(&mut a, KeyCode::Enter);
        assert!(a.prompt.is_none());
        assert_eq!(a.view.len(), 3);
        assert_eq!(a.filter.as_ref().unwrap().text(), "~k");

        press(&mut a, KeyCode::Char('f'));
        assert_eq!(a.prompt.as_ref().unwrap().input, "~k", "prefilled");
        press(&mut a, KeyCode::Backspace);
        press(&mut a, KeyCode::Backspace);
        typed(&mut a, "~c (");
        press(&mut a, KeyCode::Enter);
        let error = a.prompt.as_ref().unwrap().error.clone().unwrap();
        assert!(error.starts_with("column"), "{error}");
        assert!(error.contains('^'), "a caret under the column");
        assert_eq!(a.view.len(), 3, "the old filter stays");
        press(&mut a, KeyCode::Esc);
        assert!(a.prompt.is_none());

        press(&mut a, KeyCode::Char('f'));
        press(&mut a, KeyCode::Backspace);
        press(&mut a, KeyCode::Backspace);
        press(&mut a, KeyCode::Enter);
        assert!(a.filter.is_none());
        assert_eq!(a.view.len(), 9);
    }

    #[test]
    fn filters_needing_headers_or_bodies_are_evaluated_on_the_capture() {
        let mut a = app(4);
        press(&mut a, KeyCode::Char('f'));
        typed(&mut a, "~b needle");
        assert_eq!(press(&mut a, KeyCode::Enter), [Effect::FilterFromCapture]);
        update(&mut a, Event::Filtered([2, 4].into_iter().collect()));
        let ids: Vec<FlowId> = a.view.iter().map(|&i| a.flows[i].flow.id).collect();
        assert_eq!(ids, [2, 4]);
    }

    #[test]
    fn request_ids_jump_by_exact_id_or_unique_prefix() {
        let mut a = app(12);
        press(&mut a, KeyCode::Char('i'));
        typed(&mut a, "rid0007");
        assert_eq!(press(&mut a, KeyCode::Enter), [Effect::LoadFlow(7)]);
        press(&mut a, KeyCode::Char('q'));
        press(&mut a, KeyCode::Char('i'));
        typed(&mut a, "rid001");
        press(&mut a, KeyCode::Enter);
        // Not unique: the prompt stays with what was typed, to type more of it.
        let error = |a: &App| a.prompt.as_ref().unwrap().error.clone().unwrap();
        assert!(error(&a).contains("starts 3 request ids"), "{}", error(&a));
        assert_eq!(a.prompt.as_ref().unwrap().input, "rid001");
        typed(&mut a, "1");
        assert_eq!(press(&mut a, KeyCode::Enter), [Effect::LoadFlow(11)]);
        press(&mut a, KeyCode::Char('q'));
        press(&mut a, KeyCode::Char('i'));
        typed(&mut a, "nope");
        press(&mut a, KeyCode::Enter);
        assert!(error(&a).contains("no flow"));
        // Enter on nothing just closes it.
        press(&mut a, KeyCode::Esc);
        press(&mut a, KeyCode::Char('i'));
        press(&mut a, KeyCode::Enter);
        assert!(a.prompt.is_none());
        assert!(a.message.is_none(), "{:?}", a.message);
    }

    #[test]
    fn the_kinvey_summary_lists_errors_and_enter_filters_them() {
        let mut a = app(9);
        update(
            &mut a,
            Event::Flow(Box::new(stored(
                10,
                500,
                Some(("KinveyInternalErrorRetry", ErrorClass::Retry)),
            ))),
        );
        press(&mut a, KeyCode::Char('K'));
        let Screen::KinveySummary { rows, .. } = &a.screen else {
            panic!()
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].error.as_str(), rows[0].count),
            ("EntityNotFound", 3)
        );
        press(&mut a, KeyCode::Char('j'));
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.screen, Screen::List);
        assert_eq!(a.view.len(), 1);
        assert_eq!(
            a.filter.as_ref().unwrap().text(),
            "~kerr '^KinveyInternalErrorRetry$'"
        );
        press(&mut a, KeyCode::Char('K'));
        press(&mut a, KeyCode::Char('q'));
        assert_eq!(a.screen, Screen::List);

        // A name with a quote (an unknown error's name can be anything) still matches.
        press(&mut a, KeyCode::Char('f'));
        update(
            &mut a,
            Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
        );
        press(&mut a, KeyCode::Enter);
        press(&mut a, KeyCode::Char('z'));
        update(
            &mut a,
            Event::Flow(Box::new(stored(
                9,
                500,
                Some(("It's Broken", ErrorClass::Stop)),
            ))),
        );
        press(&mut a, KeyCode::Char('K'));
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.filter.as_ref().unwrap().text(), r"~kerr '^It\'s Broken$'");
        assert_eq!(a.view.len(), 1);

        // Chosen under a filter, a row lists the flows it counted: the filter narrowed.
        for id in [11, 12] {
            let retry = Some(("KinveyInternalErrorRetry", ErrorClass::Retry));
            update(&mut a, Event::Flow(Box::new(stored(id, 500, retry))));
        }
        press(&mut a, KeyCode::Char('f'));
        update(
            &mut a,
            Event::Key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)),
        );
        for c in "~kerr Retry & !~u books/12".chars() {
            press(&mut a, KeyCode::Char(c));
        }
        press(&mut a, KeyCode::Enter);
        press(&mut a, KeyCode::Char('K'));
        let Screen::KinveySummary { rows, .. } = &a.screen else {
            panic!()
        };
        assert_eq!(rows[0].count, 1);
        press(&mut a, KeyCode::Enter);
        assert_eq!(
            a.filter.as_ref().unwrap().text(),
            "(~kerr Retry & !~u books/12) & ~kerr '^KinveyInternalErrorRetry$'"
        );
        let listed: Vec<FlowId> = a.view.iter().map(|&i| a.flows[i].flow.id).collect();
        assert_eq!(listed, [11]);
        // The same error chosen again narrows nothing more.
        let narrowed = a.filter.as_ref().unwrap().text().to_owned();
        press(&mut a, KeyCode::Char('K'));
        press(&mut a, KeyCode::Enter);
        assert_eq!(a.filter.as_ref().unwrap().text(), narrowed);
    }

    #[test]
    fn a_slash_in_the_list_opens_the_filter_prompt() {
        let mut a = app(3);
        press(&mut a, KeyCode::Char('/'));
        assert_eq!(a.prompt.as_ref().map(|p| p.kind), Some(PromptKind::Filter));
        // Typed keys go to the prompt, not to the list (where q would quit).
        assert_eq!(press(&mut a, KeyCode::Char('q')), []);
        assert_eq!(a.prompt.as_ref().unwrap().input, "q");
    }

    #[test]
    fn report_help_clear_and_quit() {
        let mut a = app(3);
        assert_eq!(press(&mut a, KeyCode::Char('r')), [Effect::MakeReport(3)]);
        update(&mut a, Event::Report(3, "Request ID: rid0003".into()));
        let Screen::Report { text, .. } = &a.screen else {
            panic!()
        };
        assert_eq!(text.as_deref(), Some("Request ID: rid0003"));
        press(&mut a, KeyCode::Char('j'));
        press(&mut a, KeyCode::Esc);
        assert_eq!(a.screen, Screen::List);

        press(&mut a, KeyCode::Char('?'));
        assert_eq!(a.screen, Screen::Help { scroll: 0 });
        press(&mut a, KeyCode::Char('j'));
        assert_eq!(a.screen, Screen::Help { scroll: 1 });
        press(&mut a, KeyCode::Char('?'));
        assert_eq!(a.screen, Screen::List);

        press(&mut a, KeyCode::Char('z'));
        assert!(a.view.is_empty());
        update(&mut a, Event::Flow(Box::new(stored(4, 200, None))));
        assert_eq!(a.view.len(), 1, "new flows still arrive after z");
        assert_eq!(a.flows.len(), 4, "nothing is forgotten");

        assert_eq!(
            press(&mut a, KeyCode::Char('E')),
            [Effect::ExportHar {
                ids: vec![4],
                under_way: 0
            }]
        );
        update(&mut a, Event::Message("gone".into()));
        assert_eq!(a.message.as_deref(), Some("gone"));
        assert_eq!(press(&mut a, KeyCode::Char('q')), [Effect::Quit]);
        press(&mut a, KeyCode::Enter);
        assert_eq!(press(&mut a, KeyCode::Char('Q')), [Effect::Quit]);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(update(&mut a, Event::Key(ctrl_c)), [Effect::Quit]);
    }

    #[test]
    fn a_replay_listed_names_its_new_flow_and_a_told_success_is_not_said_again() {
        use crate::replay::{Answer, ReplayOutcome};
        let from = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let told = |port, answer| ReplayOutcome {
            original: 3,
            from: Some(from(port)),
            answer,
            took: Duration::from_millis(5),
        };
        let answered = |status| {
            Ok(Answer {
                status,
                by_kinspect: false,
            })
        };
        let replay = |id, port| {
            let mut replay = stored(id, 201, None);
            replay.flow.replay_of = Some(3);
            replay.flow.client_addr = from(port);
            replay.flow.timings.wait = Duration::from_millis(12);
            replay
        };
        let mut a = app(3);
        a.source.listen = Some(from(8080));
        update(&mut a, Event::Flow(Box::new(replay(4, 50004))));
        let listed = "flow 3 sent again as flow 4: 201 in 12 ms";
        assert_eq!(a.message.as_deref(), Some(listed));
        update(&mut a, Event::Replayed(told(50004, answered(201))));
        assert_eq!(a.message.as_deref(), Some(listed), "said once, by the flow");

        // Told first: the flow's line follows and names it.
        update(&mut a, Event::Replayed(told(50005, answered(201))));
        assert_eq!(
            a.message.as_deref(),
            Some("flow 3 sent again: 201 in 5 ms (a new flow)")
        );
        update(&mut a, Event::Flow(Box::new(replay(5, 50005))));
        assert_eq!(
            a.message.as_deref(),
            Some("flow 3 sent again as flow 5: 201 in 12 ms")
        );
        assert!(a.replays_listed.is_empty() && a.replays_told.is_empty());

        // A success with no flow listed for its address is said, whatever was listed
        // for other replays of the same flow.
        update(&mut a, Event::Flow(Box::new(replay(6, 50006))));
        update(&mut a, Event::Replayed(told(50007, answered(200))));
        assert_eq!(
            a.message.as_deref(),
            Some("flow 3 sent again: 200 in 5 ms (a new flow)")
        );

        // A failure is always said, even with its flow listed.
        update(
            &mut a,
            Event::Replayed(told(50006, Err("the response broke off".into()))),
        );
        assert_eq!(
            a.message.as_deref(),
            Some("sending flow 3 again failed: the response broke off")
        );

        // The flow's own error is said with its status; kinspect's answer says why.
        let mut broken = replay(8, 50008);
        broken.flow.error = Some(crate::flow::FlowError {
            kind: crate::flow::FlowErrorKind::Protocol,
            message: "the response broke off".into(),
        });
        update(&mut a, Event::Flow(Box::new(broken.clone())));
        assert_eq!(
            a.message.as_deref(),
            Some("flow 3 sent again as flow 8: 201 in 12 ms, then: the response broke off")
        );
        broken.flow.id = 9;
        broken.flow.response.as_mut().unwrap().from_proxy = true;
        broken.flow.error.as_mut().unwrap().message =
            "cannot connect to baas.kinvey.com:443".into();
        update(&mut a, Event::Flow(Box::new(broken.clone())));
        assert_eq!(
            a.message.as_deref(),
            Some("flow 3 sent again as flow 9: 201 made by kinspect: cannot connect to baas.kinvey.com:443")
        );

        // A capture only read lists replays of other runs as any flow.
        let mut read = app(3);
        update(&mut read, Event::Flow(Box::new(replay(4, 50004))));
        assert_eq!(read.message, None);
        assert!(read.replays_listed.is_empty());
    }
}
