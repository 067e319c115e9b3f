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
    /// A new flow was recorded.
    Flow(Box<StoredFlow>),
    /// A flow asked for with [`Effect::LoadFlow`], with everything.
    Loaded(Box<StoredFlow>),
    /// A report asked for with [`Effect::MakeReport`].
    Report(FlowId, String),
    /// A flow could not be loaded.
    LoadFailed(String),
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
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Applies `event` to `app`.
pub fn update(app: &mut App, event: Event) -> Vec<Effect> {
    match event {
        Event::Flow(stored) => {
            app.push(*stored);
            Vec::new()
        }
        Event::Loaded(stored) => {
            if let Screen::Detail(detail) = &mut app.screen {
                if detail.id == stored.flow.id {
                    detail.flow = Some(stored);
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
        Event::LoadFailed(message) => {
            app.message = Some(message);
            Vec::new()
        }
        Event::Filtered(ids) => {
            app.show_ids(&ids);
            Vec::new()
        }
        Event::Key(event) => {
            app.message = None;
            if event.code == KeyCode::Char('c') && event.modifiers.contains(KeyModifiers::CONTROL) {
                return vec![Effect::Quit];
            }
            if app.prompt.is_some() {
                return prompt_key(app, event);
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
    app.prompt = Some(Prompt {
        kind,
        input,
        error: None,
    });
}

fn list_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let page = app.page.max(1);
    match event.code {
        KeyCode::Char('q') => return vec![Effect::Quit],
        KeyCode::Char('j') | KeyCode::Down => select(app, app.selected + 1),
        KeyCode::Char('k') | KeyCode::Up => select(app, app.selected.saturating_sub(1)),
        KeyCode::Char('g') | KeyCode::Home => select(app, 0),
        KeyCode::Char('G') | KeyCode::End => select(app, usize::MAX),
        KeyCode::PageDown | KeyCode::Char(' ') => select(app, app.selected + page),
        KeyCode::PageUp => select(app, app.selected.saturating_sub(page)),
        KeyCode::Enter => {
            if let Some(id) = app.selected_flow().map(|f| f.flow.id) {
                app.screen = Screen::Detail(Detail {
                    id,
                    flow: None,
                    tab: Tab::Request,
                    scroll: 0,
                    search: None,
                });
                return vec![Effect::LoadFlow(id)];
            }
        }
        KeyCode::Char('f') => {
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
            app.message = Some("view cleared (the flows stay in the capture)".into());
        }
        KeyCode::Char('K') => {
            app.screen = Screen::KinveySummary {
                rows: app.kinvey_summary(),
                selected: 0,
            };
        }
        KeyCode::Char('?') => app.screen = Screen::Help { scroll: 0 },
        KeyCode::Char('r') => {
            if let Some(id) = app.selected_flow().map(|f| f.flow.id) {
                app.screen = Screen::Report {
                    id,
                    text: None,
                    scroll: 0,
                };
                return vec![Effect::MakeReport(id)];
            }
        }
        _ => {}
    }
    Vec::new()
}

fn scroll(position: &mut usize, event: KeyEvent, page: usize) -> bool {
    match event.code {
        KeyCode::Char('j') | KeyCode::Down => *position += 1,
        KeyCode::Char('k') | KeyCode::Up => *position = position.saturating_sub(1),
        KeyCode::PageDown | KeyCode::Char(' ') => *position += page,
        KeyCode::PageUp => *position = position.saturating_sub(page),
        KeyCode::Char('g') | KeyCode::Home => *position = 0,
        KeyCode::Char('G') | KeyCode::End => *position = usize::MAX / 2,
        _ => return false,
    }
    true
}

fn is_back(event: KeyEvent) -> bool {
    matches!(event.code, KeyCode::Char('q') | KeyCode::Esc)
}

fn detail_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let page = app.page.max(1);
    let Screen::Detail(detail) = &mut app.screen else {
        return Vec::new();
    };
    if is_back(event) {
        app.screen = Screen::List;
        return Vec::new();
    }
    if scroll(&mut detail.scroll, event, page) {
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
        KeyCode::Char('/') => {
            let current = detail.search.clone().unwrap_or_default();
            open_prompt(app, PromptKind::Search, current);
        }
        KeyCode::Char('n') => jump_to_match(detail, true, &mut app.message),
        KeyCode::Char('N') => jump_to_match(detail, false, &mut app.message),
        KeyCode::Char('r') => {
            let id = detail.id;
            app.screen = Screen::Report {
                id,
                text: None,
                scroll: 0,
            };
            return vec![Effect::MakeReport(id)];
        }
        _ => {}
    }
    Vec::new()
}

/// Scrolls the detail to the next (or previous) line matching its search term.
fn jump_to_match(detail: &mut Detail, forward: bool, message: &mut Option<String>) {
    let Some(term) = detail.search.clone().filter(|t| !t.is_empty()) else {
        *message = Some("no search: press / to search".into());
        return;
    };
    let Some(flow) = &detail.flow else {
        return;
    };
    let lines = super::view::detail_lines(flow, detail.tab);
    let term = term.to_lowercase();
    let hits: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.to_lowercase().contains(&term))
        .map(|(i, _)| i)
        .collect();
    let found = if forward {
        hits.iter().find(|&&i| i > detail.scroll).or(hits.first())
    } else {
        hits.iter()
            .rev()
            .find(|&&i| i < detail.scroll)
            .or(hits.last())
    };
    match found {
        Some(&line) => detail.scroll = line,
        None => *message = Some(format!("{term:?} not found in this tab")),
    }
}

fn help_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let page = app.page.max(1);
    if is_back(event) || event.code == KeyCode::Char('?') {
        app.screen = Screen::List;
    } else if let Screen::Help { scroll: position } = &mut app.screen {
        scroll(position, event, page);
    }
    Vec::new()
}

fn report_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let page = app.page.max(1);
    if is_back(event) {
        app.screen = Screen::List;
    } else if let Screen::Report {
        scroll: position, ..
    } = &mut app.screen
    {
        scroll(position, event, page);
    }
    Vec::new()
}

fn summary_key(app: &mut App, event: KeyEvent) -> Vec<Effect> {
    let Screen::KinveySummary { rows, selected } = &mut app.screen else {
        return Vec::new();
    };
    match event.code {
        KeyCode::Char('q') | KeyCode::Esc | KeyCode::Char('K') => app.screen = Screen::List,
        KeyCode::Char('j') | KeyCode::Down => {
            *selected = (*selected + 1).min(rows.len().saturating_sub(1))
        }
        KeyCode::Char('k') | KeyCode::Up => *selected = selected.saturating_sub(1),
        KeyCode::Enter => {
            if let Some(row) = rows.get(*selected) {
                let text = format!("~kerr '^{}$'", regex::escape(&row.error));
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
    match event.code {
        KeyCode::Esc => app.prompt = None,
        KeyCode::Backspace => {
            prompt.input.pop();
            prompt.error = None;
        }
        KeyCode::Char(c) => {
            prompt.input.push(c);
            prompt.error = None;
        }
        KeyCode::Enter => {
            let input = prompt.input.clone();
            match prompt.kind {
                PromptKind::Filter => match apply_filter(app, &input) {
                    Ok(effects) => {
                        app.prompt = None;
                        return effects;
                    }
                    Err(error) => {
                        if let Some(prompt) = app.prompt.as_mut() {
                            prompt.error = Some(error);
                        }
                    }
                },
                PromptKind::RequestId => {
                    app.prompt = None;
                    return jump_to_request_id(app, &input);
                }
                PromptKind::Search => {
                    app.prompt = None;
                    if let Screen::Detail(detail) = &mut app.screen {
                        detail.search = Some(input).filter(|s| !s.is_empty());
                        detail.scroll = 0;
                        jump_to_match(detail, true, &mut app.message);
                    }
                }
            }
        }
        _ => {}
    }
    Vec::new()
}

/// Opens the flow with this request id (exact, else a unique prefix).
fn jump_to_request_id(app: &mut App, query: &str) -> Vec<Effect> {
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
                app.message = Some(format!("no flow has a request id starting with {query:?}"));
                return Vec::new();
            }
            (n, _) => {
                app.message = Some(format!("{query:?} starts {n} request ids: type more of it"));
                return Vec::new();
            }
        }
    };
    match app.position_of(id) {
        Some(position) => {
            select(app, position);
            list_key(app, key(KeyCode::Enter))
        }
        None => {
            app.message = Some(format!(
                "flow {id} has that request id but is hidden by the filter or cleared"
            ));
            Vec::new()
        }
    }
}
