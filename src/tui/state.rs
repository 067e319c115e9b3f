//! The UI's state. Changed only by [`super::update::update`]; drawn by
//! [`super::view::draw`], which fills a detail's text cache (not part of the state).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use unicode_segmentation::UnicodeSegmentation;

use crate::capture::StoredFlow;
use crate::filter::Filter;
use crate::flow::{FlowId, HeaderField, Headers};
use crate::kinvey::RequestIdIndex;

use super::body::BodyView;
use super::text::LaidOutText;

/// The flow as the list keeps it: no body bytes and only the content type among the
/// headers, so 100k flows stay small. Details are loaded from the capture on demand.
pub fn summarize(stored: &mut StoredFlow) {
    stored.flow.request.body.bytes = Default::default();
    stored.flow.request.headers = Headers::default();
    if let Some(response) = stored.flow.response.as_mut() {
        response.body.bytes = Default::default();
        // Copied: a kept value would hold on to the buffer of all the message's values.
        let content_type = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-type"))
            .map(|h| HeaderField {
                name: h.name.clone(),
                value: Bytes::copy_from_slice(&h.value),
            });
        response.headers = Headers(content_type.into_iter().collect());
    }
}

/// The list's top row for `page` rows of a view of `len` flows, `top` as it was: moved
/// as little as it takes for the page to be as full as the view allows and `selected`
/// in it (the update keeps it so; the view applies it again for the rows it really has:
/// a message over several lines, a terminal resized since).
pub fn list_top(top: usize, selected: usize, len: usize, page: usize) -> usize {
    let page = page.max(1);
    let top = top.min(len.saturating_sub(page));
    if selected < top {
        selected
    } else {
        top.max((selected + 1).saturating_sub(page))
    }
}

/// Where the flows come from, for the status bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// The proxy's address, when live.
    pub listen: Option<SocketAddr>,
    /// The capture file.
    pub capture: PathBuf,
    /// The CA certificate, when live.
    pub ca: Option<PathBuf>,
    /// The HAR the capture was imported from (into a temporary file): what is shown.
    pub har: Option<PathBuf>,
    /// Entries of that HAR, or flows of the capture, that could not be read, left out
    /// (each said on stderr).
    pub left_out: usize,
}

/// The tabs of the flow detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    /// Request line, headers, body.
    Request,
    /// Status line, headers, body.
    Response,
    /// Kinvey error, class, what to do, anomalies, warnings, request id.
    Kinvey,
    /// Phase timings, addresses, TLS of both legs.
    Timing,
}

impl Tab {
    /// Every tab, in display order.
    pub const ALL: [Tab; 4] = [Tab::Request, Tab::Response, Tab::Kinvey, Tab::Timing];

    /// The tab's title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Request => "Request",
            Tab::Response => "Response",
            Tab::Kinvey => "Kinvey",
            Tab::Timing => "Timing & TLS",
        }
    }

    /// Its title where the whole ones do not fit.
    pub fn short_title(self) -> &'static str {
        match self {
            Tab::Request => "Req",
            Tab::Response => "Resp",
            Tab::Kinvey => "Kinvey",
            Tab::Timing => "Timing",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    /// The next tab (wrapping).
    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    /// The previous tab (wrapping).
    pub fn previous(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

/// The flow detail screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// The flow shown.
    pub id: FlowId,
    /// The flow with everything, once loaded from the capture.
    flow: Option<Box<StoredFlow>>,
    /// The current tab.
    pub tab: Tab,
    /// The first screen row shown.
    pub scroll: usize,
    /// The body search term (`/`), if any.
    pub search: Option<String>,
    /// How bodies are shown.
    pub body_view: BodyView,
    /// The text of the tabs shown, made when first asked for.
    pub text_cache: TextCache,
}

impl Detail {
    /// The detail of flow `id` on `tab`, with `flow` when it is already at hand.
    pub fn new(
        id: FlowId,
        flow: Option<Box<StoredFlow>>,
        tab: Tab,
        search: Option<String>,
    ) -> Detail {
        Detail {
            id,
            flow,
            tab,
            scroll: 0,
            search,
            body_view: BodyView::default(),
            text_cache: TextCache::default(),
        }
    }

    /// The flow with everything, once loaded.
    pub fn flow(&self) -> Option<&StoredFlow> {
        self.flow.as_deref()
    }

    /// Shows `flow`, loaded (or finished) since the detail opened.
    pub fn set_flow(&mut self, flow: Box<StoredFlow>) {
        self.flow = Some(flow);
        self.text_cache = TextCache::default();
    }
}

/// What a detail's text is of: a tab, its bodies in a view.
pub type Shown = (Tab, BodyView);

/// A detail's text: the lines of each tab and body view it has shown, and the layout of
/// the last one shown. Filled when first asked for (drawing, scrolling), so not part of
/// the state: two details
/// alike are equal whatever either has laid out.
#[derive(Clone, Default)]
pub struct TextCache {
    lines: RefCell<Vec<(Shown, Arc<Vec<String>>)>>,
    laid_out: RefCell<Option<(Shown, Arc<LaidOutText>)>>,
}

impl TextCache {
    /// The text `shown`, laid out `width` columns wide; its lines made by `make` unless
    /// made before.
    pub fn laid_out(
        &self,
        shown: Shown,
        width: usize,
        make: impl FnOnce() -> Vec<String>,
    ) -> Arc<LaidOutText> {
        if let Some((of, text)) = &*self.laid_out.borrow() {
            if *of == shown && text.width == width.max(1) {
                return text.clone();
            }
        }
        let lines = {
            let mut made = self.lines.borrow_mut();
            match made.iter().find(|(of, _)| *of == shown) {
                Some((_, lines)) => lines.clone(),
                None => {
                    let lines = Arc::new(make());
                    made.push((shown, lines.clone()));
                    lines
                }
            }
        };
        // The Kinvey and Timing tabs are labelled lines (see `labelled_lines`).
        let hanging = match shown.0 {
            Tab::Kinvey | Tab::Timing => super::view::LABEL_COLUMN,
            Tab::Request | Tab::Response => 0,
        };
        let text = Arc::new(LaidOutText::shared(lines, width, hanging));
        *self.laid_out.borrow_mut() = Some((shown, text.clone()));
        text
    }
}

impl PartialEq for TextCache {
    fn eq(&self, _: &TextCache) -> bool {
        true
    }
}

impl std::fmt::Debug for TextCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextCache")
    }
}

/// One row of the Kinvey summary: an error name, its class and how often it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// The error name.
    pub error: String,
    /// Its badge (`RETRY`, `?FIX`, ...).
    pub badge: String,
    /// Flows in the view carrying it.
    pub count: usize,
}

/// What fills the screen above the status bar.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// The flow list.
    List,
    /// One flow's detail.
    Detail(Detail),
    /// Keys and the filter language.
    Help {
        /// The first line shown.
        scroll: usize,
    },
    /// Counts by Kinvey error name and class.
    KinveySummary {
        /// The rows.
        rows: Vec<SummaryRow>,
        /// The selected row.
        selected: usize,
    },
    /// A support report.
    Report {
        /// The flow it is about.
        id: FlowId,
        /// The report, once made.
        text: Option<String>,
        /// The first line shown.
        scroll: usize,
    },
}

/// What the one-line prompt is asking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// A filter expression (`f`).
    Filter,
    /// A request id or prefix (`i`).
    RequestId,
    /// A search term inside the detail (`/`).
    Search,
}

/// The one-line prompt at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// What it asks for.
    pub kind: PromptKind,
    /// The text typed so far.
    pub input: String,
    /// Where the next character goes: a byte offset into `input`, on a char boundary.
    pub cursor: usize,
    /// Why the last input was refused (a filter error with its column).
    pub error: Option<String>,
}

impl Prompt {
    /// A prompt for `kind` holding `input`, the cursor at its end.
    pub fn new(kind: PromptKind, input: String) -> Prompt {
        Prompt {
            kind,
            cursor: input.len(),
            input,
            error: None,
        }
    }

    /// Where the character (grapheme: `e` + accent, an emoji with its skin tone) before
    /// the cursor starts, if there is one.
    fn before(&self) -> Option<usize> {
        self.input[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map(|(i, _)| i)
    }

    /// Where the character after the cursor ends, if there is one.
    fn after(&self) -> Option<usize> {
        self.input[self.cursor..]
            .graphemes(true)
            .next()
            .map(|g| self.cursor + g.len())
    }

    /// Types `c` at the cursor.
    pub fn insert(&mut self, c: char) {
        self.input.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Deletes the character before the cursor (Backspace).
    pub fn delete_before(&mut self) {
        if let Some(start) = self.before() {
            self.input.replace_range(start..self.cursor, "");
            self.cursor = start;
        }
    }

    /// Deletes the character under the cursor (Delete).
    pub fn delete_under(&mut self) {
        if let Some(end) = self.after() {
            self.input.replace_range(self.cursor..end, "");
        }
    }

    /// Deletes the word before the cursor and the spaces after it (Ctrl-W).
    pub fn delete_word_before(&mut self) {
        let start = self.input[..self.cursor]
            .trim_end()
            .rfind(' ')
            .map_or(0, |i| i + 1);
        self.input.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn delete_to_start(&mut self) {
        self.input.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Deletes from the cursor to the end of the line (Ctrl-K).
    pub fn delete_to_end(&mut self) {
        self.input.truncate(self.cursor);
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        if let Some(start) = self.before() {
            self.cursor = start;
        }
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        if let Some(end) = self.after() {
            self.cursor = end;
        }
    }

    /// Moves the cursor to the start (Home, Ctrl-A) or the end (End, Ctrl-E).
    pub fn to_start(&mut self, start: bool) {
        self.cursor = if start { 0 } else { self.input.len() };
    }
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// Where the flows come from.
    pub source: SourceInfo,
    /// Every flow received, in order (summaries: no bodies). Boxed, so that growing the
    /// list moves pointers: a live capture at 20k flows/s reallocated (and page-faulted)
    /// a vector of 600-byte summaries at every doubling, a tenth of kinspect's CPU.
    pub flows: Vec<Box<StoredFlow>>,
    /// The largest flow id received (the list's id column is as wide as it).
    pub largest_id: crate::flow::FlowId,
    /// Exchanges still under way, by id: where in `flows` each is, whole (request head,
    /// no response yet) until its finished flow takes its place.
    pub in_flight: std::collections::HashMap<FlowId, usize>,
    /// The time as of the last list of exchanges under way (their durations run to it).
    pub clock: std::time::SystemTime,
    /// Flows before this index were cleared from the view (`z`).
    pub cleared: usize,
    /// Indexes into `flows` of the flows shown (passing the filter).
    pub view: Vec<usize>,
    /// The active filter.
    pub filter: Option<Filter>,
    /// The selected position in `view`.
    pub selected: usize,
    /// The position in `view` of the list's top row: the selection moves within the
    /// rows shown, and the list scrolls only when it would leave them.
    pub top: usize,
    /// `q` asked whether to stop the proxy: the next key answers.
    pub asking_to_quit: bool,
    /// The widest KINVEY cell of the flows in the view since it was last filtered or
    /// cleared (the column is as wide as it).
    pub kinvey_cell_width: usize,
    /// Keep the selection on the newest flow.
    pub follow: bool,
    /// The screen shown.
    pub screen: Screen,
    /// The prompt, while one is open.
    pub prompt: Option<Prompt>,
    /// A one-line message (errors, confirmations) until the next key.
    pub message: Option<String>,
    /// Rows the flow list and the text views show at once (set by the view from the
    /// terminal size).
    pub page: usize,
    /// Columns the text views show before wrapping (set by the view likewise).
    pub width: usize,
    /// The screen a report or the help was opened from, to go back to.
    pub behind: Option<Box<Screen>>,
    /// Flows by request id, for `i`.
    pub request_ids: RequestIdIndex,
    /// Requests sent again (by the address they came from) whose flow was listed before
    /// the replayer said how they went: the flow's line said it.
    pub replays_listed: std::collections::HashSet<std::net::SocketAddr>,
    /// Requests sent again whose replayer said how they went before their flow was
    /// listed.
    pub replays_told: std::collections::HashSet<std::net::SocketAddr>,
}

impl App {
    /// An empty UI for `source`, following new flows.
    pub fn new(source: SourceInfo) -> App {
        // Said on stderr too, which the UI's screen then covers.
        let message = match (&source.har, source.left_out) {
            (_, 0) => None,
            (har, n) => {
                let (file, one, many) = match har {
                    Some(har) => (har, "entry", "entries"),
                    None => (&source.capture, "flow", "flows"),
                };
                Some(format!(
                    "{} of {} could not be read and {} left out (`kinspect ls {}` says why)",
                    crate::headless::counted(n as u64, one, many),
                    file.display(),
                    if n == 1 { "is" } else { "are" },
                    crate::curl::quoted(&file.display().to_string())
                ))
            }
        };
        App {
            source,
            flows: Vec::new(),
            largest_id: 0,
            top: 0,
            asking_to_quit: false,
            kinvey_cell_width: 0,
            in_flight: std::collections::HashMap::new(),
            clock: std::time::UNIX_EPOCH,
            cleared: 0,
            view: Vec::new(),
            filter: None,
            selected: 0,
            follow: true,
            screen: Screen::List,
            prompt: None,
            message,
            page: 20,
            width: 80,
            behind: None,
            request_ids: RequestIdIndex::new(),
            replays_listed: std::collections::HashSet::new(),
            replays_told: std::collections::HashSet::new(),
        }
    }

    /// The flow details open: the one shown, and one under the help or a report.
    pub fn details(&self) -> impl Iterator<Item = &Detail> {
        [Some(&self.screen), self.behind.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|screen| match screen {
                Screen::Detail(detail) => Some(detail),
                _ => None,
            })
    }

    /// [`App::details`], to change.
    pub fn details_mut(&mut self) -> impl Iterator<Item = &mut Detail> {
        [Some(&mut self.screen), self.behind.as_deref_mut()]
            .into_iter()
            .flatten()
            .filter_map(|screen| match screen {
                Screen::Detail(detail) => Some(detail),
                _ => None,
            })
    }

    /// The flow under the selection, if any.
    pub fn selected_flow(&self) -> Option<&StoredFlow> {
        self.view.get(self.selected).map(|&i| &*self.flows[i])
    }

    /// Adds a finished flow: the filter is evaluated on it whole, then only its summary
    /// is kept (its bodies stay in the capture). One listed as under way is replaced
    /// where it stands; true then.
    pub fn push(&mut self, mut stored: Box<StoredFlow>) -> bool {
        if let Some(id) = &stored.kinvey.request_id {
            self.request_ids.insert(id, stored.flow.id);
        }
        let shown = self.filter.as_ref().is_none_or(|f| f.matches(&stored));
        summarize(&mut stored);
        if shown {
            let cell = super::view::kinvey_cell_width(&stored.kinvey);
            self.kinvey_cell_width = self.kinvey_cell_width.max(cell);
        }
        match self.in_flight.remove(&stored.flow.id) {
            // Listed before the view was cleared (`z`): it finishes as a new row, as it
            // would have had it not been listed.
            Some(index) if index < self.cleared => {
                self.append(stored, shown);
                true
            }
            Some(index) => {
                self.flows[index] = stored;
                self.show_at(index, shown);
                true
            }
            None => {
                self.append(stored, shown);
                false
            }
        }
    }

    /// Lists exchanges under way (oldest first), whole: new ones last, one listed
    /// already (it switched to a WebSocket since) in its place; `now` is the time their
    /// durations run to.
    pub fn push_in_flight(&mut self, flows: Vec<crate::flow::Flow>, now: std::time::SystemTime) {
        self.clock = now;
        for flow in flows {
            let stored = Box::new(StoredFlow {
                flow,
                kinvey: Default::default(),
            });
            let shown = self.filter.as_ref().is_none_or(|f| f.matches(&stored));
            match self.in_flight.get(&stored.flow.id).copied() {
                // Hidden by a `z` since it was listed: it stays so.
                Some(index) if index < self.cleared => self.flows[index] = stored,
                Some(index) => {
                    self.flows[index] = stored;
                    self.show_at(index, shown);
                }
                None => {
                    self.in_flight.insert(stored.flow.id, self.flows.len());
                    self.append(stored, shown);
                }
            }
        }
    }

    /// True for a flow listed while under way, not finished yet.
    pub fn is_in_flight(&self, id: FlowId) -> bool {
        self.in_flight.contains_key(&id)
    }

    /// Moves the list's top row as [`list_top`] says for the page the update counts on.
    pub fn scroll_list_to_selection(&mut self) {
        self.top = list_top(self.top, self.selected, self.view.len(), self.page);
    }

    fn append(&mut self, stored: Box<StoredFlow>, shown: bool) {
        let index = self.flows.len();
        self.largest_id = self.largest_id.max(stored.flow.id);
        self.flows.push(stored);
        if shown {
            self.view.push(index);
            if self.follow {
                self.selected = self.view.len() - 1;
            }
        }
    }

    /// Shows or hides the flow at `index` (whose flow changed), keeping the selection on
    /// the flow it was on.
    fn show_at(&mut self, index: usize, shown: bool) {
        match (self.view.binary_search(&index), shown) {
            (Ok(position), false) => {
                self.view.remove(position);
                if self.selected > position || self.selected >= self.view.len() {
                    self.selected = self.selected.saturating_sub(1);
                }
            }
            (Err(position), true) => {
                self.view.insert(position, index);
                if self.selected >= position && self.view.len() > 1 {
                    self.selected += 1;
                }
            }
            _ => {}
        }
        if self.follow {
            self.selected = self.view.len().saturating_sub(1);
        }
    }

    /// True when the filter needs what summaries lack (headers, bodies): the view must
    /// then be recomputed from the capture.
    pub fn filter_needs_capture(&self) -> bool {
        self.filter
            .as_ref()
            .is_some_and(|f| f.needs_headers() || f.needs_bodies())
    }

    /// Recomputes the view from the summaries after the filter or the cleared mark
    /// changed, keeping the selected flow selected when it is still shown.
    pub fn refilter(&mut self) {
        let filter = self.filter.as_ref();
        let view = (self.cleared..self.flows.len())
            .filter(|&i| filter.is_none_or(|f| f.matches(&self.flows[i])))
            .collect();
        self.set_view(view);
    }

    /// Shows the flows with these ids (a filter evaluated on the capture).
    pub fn show_ids(&mut self, ids: &std::collections::HashSet<FlowId>) {
        // Exchanges under way are not in the capture yet: they are whole here.
        let filter = self.filter.as_ref();
        let view = (self.cleared..self.flows.len())
            .filter(|&i| {
                let stored = &self.flows[i];
                match self.in_flight.contains_key(&stored.flow.id) {
                    true => filter.is_none_or(|f| f.matches(stored)),
                    false => ids.contains(&stored.flow.id),
                }
            })
            .collect();
        self.set_view(view);
    }

    fn set_view(&mut self, view: Vec<usize>) {
        let keep = self.selected_flow().map(|f| f.flow.id);
        self.view = view;
        self.kinvey_cell_width = self
            .view
            .iter()
            .map(|&i| super::view::kinvey_cell_width(&self.flows[i].kinvey))
            .max()
            .unwrap_or(0);
        self.selected = keep
            .and_then(|id| self.view.iter().position(|&i| self.flows[i].flow.id == id))
            .unwrap_or_else(|| self.view.len().saturating_sub(1));
        if self.follow {
            self.selected = self.view.len().saturating_sub(1);
        }
    }

    /// The position in `view` of flow `id`, if shown.
    pub fn position_of(&self, id: FlowId) -> Option<usize> {
        self.view.iter().position(|&i| self.flows[i].flow.id == id)
    }

    /// Counts by Kinvey error name of the flows in the view, most frequent first.
    pub fn kinvey_summary(&self) -> Vec<SummaryRow> {
        let mut rows: Vec<SummaryRow> = Vec::new();
        for &i in &self.view {
            // A batch counts once under each of its errors (the other errors are
            // distinct already).
            for (error, class, known) in self.flows[i].kinvey.all_errors() {
                let badge = crate::kinvey::badge(class, known);
                match rows
                    .iter_mut()
                    .find(|r| r.error == error && r.badge == badge)
                {
                    Some(row) => row.count += 1,
                    None => rows.push(SummaryRow {
                        error: error.to_owned(),
                        badge,
                        count: 1,
                    }),
                }
            }
        }
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.error.cmp(&b.error)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CapturedBody, Flow};

    #[test]
    fn entries_or_flows_left_out_are_said_when_the_ui_opens() {
        let source = |left_out| SourceInfo {
            har: Some("trip.har".into()),
            left_out,
            ..SourceInfo::default()
        };
        assert_eq!(App::new(source(0)).message, None);
        let said = App::new(source(2)).message.unwrap();
        assert!(
            said.starts_with("2 entries of trip.har could not be read and are left out"),
            "{said}"
        );
        assert!(said.contains("`kinspect ls 'trip.har'` says why"), "{said}");
        // Flows of a capture whose rows could not be read.
        let capture = SourceInfo {
            capture: "trip.db".into(),
            left_out: 1,
            ..SourceInfo::default()
        };
        let said = App::new(capture).message.unwrap();
        assert!(
            said.starts_with("1 flow of trip.db could not be read and is left out"),
            "{said}"
        );
    }

    #[test]
    fn the_kinvey_summary_counts_a_batch_under_each_of_its_errors() {
        use crate::kinvey::{ErrorClass, OtherError};
        let client = "127.0.0.1:40000".parse().unwrap();
        let stored = |id, error: &str, class, others: Vec<OtherError>| {
            Box::new(StoredFlow {
                flow: Flow::exchange(id, client, "POST", "http://example.test/", Some(207)),
                kinvey: crate::kinvey::KinveySummary {
                    error: Some(error.into()),
                    class: Some(class),
                    known: true,
                    other_errors: others,
                    ..Default::default()
                },
            })
        };
        let mut app = App::new(SourceInfo::default());
        let other = |error: &str, class, known| OtherError {
            error: error.into(),
            class,
            known,
        };
        app.push(stored(
            1,
            "KinveyInternalErrorStop",
            ErrorClass::Stop,
            vec![
                other("JSONParseError", ErrorClass::Fix, true),
                other("Made", ErrorClass::Fix, false),
            ],
        ));
        app.push(stored(2, "JSONParseError", ErrorClass::Fix, vec![]));
        let rows: Vec<_> = app
            .kinvey_summary()
            .into_iter()
            .map(|r| (r.error, r.badge, r.count))
            .collect();
        assert_eq!(
            rows,
            [
                ("JSONParseError".into(), "FIX".into(), 2),
                ("KinveyInternalErrorStop".into(), "STOP".into(), 1),
                ("Made".into(), "?FIX".into(), 1),
            ]
        );
    }

    #[test]
    fn a_summary_keeps_only_a_copy_of_the_content_type() {
        let client = "127.0.0.1:40000".parse().unwrap();
        let mut flow = Flow::exchange(1, client, "POST", "http://example.test/", Some(200));
        flow.request.headers = [("host", "example.test")].into_iter().collect();
        flow.request.body = CapturedBody::whole(&b"{}"[..]);
        let response = flow.response.as_mut().unwrap();
        response.headers = [
            ("server", "nginx"),
            ("content-type", "application/json"),
            ("etag", "\"1\""),
        ]
        .into_iter()
        .collect();
        response.body = CapturedBody::whole(&b"[]"[..]);
        let values = response.headers.0[0].value.as_ptr() as usize;
        let mut stored = StoredFlow {
            flow,
            kinvey: Default::default(),
        };
        summarize(&mut stored);
        assert!(stored.flow.request.headers.is_empty());
        assert!(stored.flow.request.body.bytes.is_empty());
        let response = stored.flow.response.as_ref().unwrap();
        assert!(response.body.bytes.is_empty());
        assert_eq!(response.body.wire_size, 2, "sizes stay for the list");
        assert_eq!(response.headers.len(), 1);
        assert_eq!(
            response.headers.get("content-type").as_deref(),
            Some("application/json")
        );
        // Not a slice of the message's buffer of values, which would stay alive with it.
        let kept = response.headers.0[0].value.as_ptr() as usize;
        assert!(!(values..values + "nginxapplication/json\"1\"".len()).contains(&kept));
    }
}
