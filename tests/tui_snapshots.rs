//! Whole-screen snapshots of the terminal UI through ratatui's TestBackend: the list,
//! each detail tab, a filter error, the help screen, the Kinvey summary and a report.
//! Clock times are masked.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use kinspect::capture::StoredFlow;
use kinspect::flow::{
    CapturedBody, Flow, FlowError, FlowErrorKind, FlowKind, Headers, HttpVersion, RequestRecord,
    ResponseRecord, Timings, TlsInfo,
};
use kinspect::kinvey::{self, BehaviourTracker, KinveySummary};
use kinspect::tui::state::{App, Screen, SourceInfo};
use kinspect::tui::update::{update, Effect, Event};
use kinspect::tui::view;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

fn body(text: &str) -> CapturedBody {
    CapturedBody::whole(Bytes::copy_from_slice(text.as_bytes()))
}

/// A Kinvey exchange as kinspect would record it.
fn exchange(
    id: u64,
    at_ms: u64,
    method: &str,
    path: &str,
    request_body: &str,
    status: u16,
    response_body: &str,
) -> Flow {
    Flow {
        id,
        kind: FlowKind::Http,
        client_addr: "127.0.0.1:50412".parse().unwrap(),
        started_at: UNIX_EPOCH + Duration::from_millis(1_764_028_800_000 + at_ms),
        scheme: "https".into(),
        host: "baas.kinvey.com".into(),
        port: 443,
        request: RequestRecord {
            method: method.into(),
            url: format!("https://baas.kinvey.com{path}"),
            version: HttpVersion::Http2,
            headers: headers(&[
                ("x-kinvey-api-version", "5"),
                ("authorization", "Kinvey 0123.abcdef-session-token"),
                ("content-type", "application/json"),
            ]),
            body: body(request_body),
        },
        response: Some(ResponseRecord {
            status,
            version: HttpVersion::Http2,
            headers: headers(&[
                ("content-type", "application/json; charset=utf-8"),
                (
                    "x-kinvey-request-id",
                    &format!("{id:02}f1c0a9e1b24d6b8e0c1f2a3b4c5d6e"),
                ),
            ]),
            body: body(response_body),
            from_proxy: false,
        }),
        timings: Timings {
            blocked: None,
            dns: Some(Duration::from_micros(1200)),
            connect: Some(Duration::from_micros(8400)),
            ssl: Some(Duration::from_micros(6100)),
            send: Duration::from_micros(150),
            wait: Duration::from_millis(41),
            receive: Duration::from_micros(320),
        },
        server_ip: Some("10.20.30.40".parse().unwrap()),
        client_tls: Some(Arc::new(TlsInfo {
            sni: Some("baas.kinvey.com".into()),
            alpn: Some("h2".into()),
            version: Some("TLSv1.3".into()),
        })),
        server_tls: Some(Arc::new(TlsInfo {
            sni: Some("baas.kinvey.com".into()),
            alpn: Some("h2".into()),
            version: Some("TLSv1.3".into()),
        })),
        error: None,
        websocket: None,
        replay_of: None,
    }
}

fn flows() -> Vec<StoredFlow> {
    let retry = r#"{"error":"KinveyInternalErrorRetry","description":"The Kinvey server encountered an unexpected error. Please retry your request","debug":"shard 3 restarting"}"#;
    let mut raw = vec![
        exchange(
            1,
            0,
            "POST",
            "/user/kid_x/login",
            r#"{"username":"ada","password":"lovelace"}"#,
            200,
            r#"{"_id":"u1","username":"ada"}"#,
        ),
        exchange(
            2,
            120,
            "GET",
            "/appdata/kid_x/books/nope",
            "",
            404,
            r#"{"error":"EntityNotFound","description":"This entity not found in the collection","debug":"id nope"}"#,
        ),
        exchange(3, 300, "POST", "/rpc/kid_x/custom/sync", "{}", 500, retry),
        // Sent 8 ms after flow 3 ended.
        exchange(4, 360, "POST", "/rpc/kid_x/custom/sync", "{}", 500, retry),
        exchange(
            5,
            700,
            "POST",
            "/rpc/kid_x/custom/purge",
            "{}",
            500,
            r#"{"error":"KinveyInternalErrorStop","description":"The Kinvey server encountered an unexpected error. Please contact support@kinvey.com for assistance"}"#,
        ),
        exchange(
            6,
            900,
            "GET",
            "/appdata/kid_x/quota",
            "",
            429,
            r#"{"error":"QuotaExceeded","description":"Too many requests"}"#,
        ),
        exchange(
            7,
            950,
            "POST",
            "/rpc/kid_x/custom/report",
            "{}",
            550,
            r#"{"error":"BLTimeoutError ","description":"The Business Logic script did not complete in time. See debug message for details","debug":"Script timed out after 2000ms"}"#,
        ),
    ];
    let mut refused = exchange(
        8,
        1000,
        "GET",
        "/health",
        "",
        502,
        r#"{"error":"UpstreamConnectFailure"}"#,
    );
    refused.host = "status.example".into();
    refused.request.url = "http://status.example:9/health".into();
    refused.response.as_mut().unwrap().from_proxy = true;
    refused.error = Some(FlowError {
        kind: FlowErrorKind::Connect,
        message: "cannot connect to upstream status.example:9 (10.0.0.9:9): Connection refused"
            .into(),
    });
    raw.push(refused);
    let mut tracker = BehaviourTracker::new();
    raw.into_iter()
        .map(|flow| {
            let analysis = kinvey::analyze(&flow);
            let warnings = tracker.observe(&flow, &analysis);
            StoredFlow {
                kinvey: KinveySummary::new(&analysis, &warnings),
                flow,
            }
        })
        .collect()
}

fn app() -> App {
    let mut app = App::new(SourceInfo {
        listen: Some("127.0.0.1:8080".parse().unwrap()),
        capture: "/home/ada/.kinspect/captures/2026-11-25T00-00-00Z.db".into(),
        ca: Some("/home/ada/.kinspect/kinspect-ca.pem".into()),
        har: None,
        left_out: 0,
    });
    for stored in flows() {
        update(&mut app, Event::Flow(Box::new(stored)));
    }
    app
}

fn press(app: &mut App, code: KeyCode) -> Vec<Effect> {
    update(app, Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

/// Carries out the effects the way the runtime does, from the in-memory fixtures.
fn run_effects(app: &mut App, effects: Vec<Effect>) {
    for effect in effects {
        let full = |id| flows().into_iter().find(|f| f.flow.id == id).unwrap();
        match effect {
            Effect::LoadFlow(id) => {
                update(app, Event::Loaded(Box::new(full(id))));
            }
            Effect::MakeReport(id) => {
                let stored = full(id);
                let analysis = kinvey::analyze(&stored.flow);
                let text = kinvey::report::support_report(
                    &stored.flow,
                    &analysis,
                    &stored.kinvey.warnings,
                    &mut Default::default(),
                );
                update(app, Event::Report(id, text));
            }
            Effect::Quit
            | Effect::FilterFromCapture
            | Effect::ExportHar { .. }
            | Effect::Replay { .. }
            | Effect::SaveBody { .. }
            | Effect::CopyCurl(_) => {}
        }
    }
}

fn screen(app: &mut App) -> String {
    screen_sized(app, 140, 24)
}

/// [`screen`] in a terminal `width` × `height` cells.
fn screen_sized(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| {
            app.page = view::list_page(frame.area());
            view::draw(frame, app);
        })
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    let width = buffer.area.width as usize;
    let symbols: Vec<&str> = buffer.content.iter().map(|c| c.symbol()).collect();
    let clock = regex::Regex::new(r"\d\d:\d\d:\d\d\.\d\d\d").unwrap();
    let stamp = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").unwrap();
    symbols
        .chunks(width)
        .map(|row| {
            let line = row.concat();
            let line = stamp.replace_all(&line, "YYYY-MM-DDThh:mm:ss.mmmZ");
            clock
                .replace_all(&line, "hh:mm:ss.mmm")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_flow_list() {
    insta::assert_snapshot!(screen(&mut app()));
}

#[test]
fn each_detail_tab() {
    let mut app = app();
    press(&mut app, KeyCode::Char('g'));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    let effects = press(&mut app, KeyCode::Enter);
    run_effects(&mut app, effects);
    insta::assert_snapshot!("detail_request", screen(&mut app));
    press(&mut app, KeyCode::Tab);
    insta::assert_snapshot!("detail_response", screen(&mut app));
    press(&mut app, KeyCode::Tab);
    insta::assert_snapshot!("detail_kinvey", screen(&mut app));
    press(&mut app, KeyCode::Tab);
    insta::assert_snapshot!("detail_timing", screen(&mut app));
    // Narrow, every tab stays in sight: the body view's name goes, then titles shorten.
    let mut tabs = |width| {
        let screen = screen_sized(&mut app, width, 10);
        screen.lines().next().unwrap().to_owned()
    };
    assert!(tabs(100).contains("4 Timing & TLS") && tabs(100).contains("v body"));
    let middling = tabs(60);
    assert!(
        middling.contains("4 Timing & TLS") && !middling.contains("v body"),
        "{middling}"
    );
    let narrow = tabs(40);
    assert!(
        narrow.contains("3 Kinvey") && narrow.contains("4 Timing"),
        "{narrow}"
    );
}

#[test]
fn a_filter_error_points_at_its_column() {
    let mut app = app();
    press(&mut app, KeyCode::Char('f'));
    for c in "~kc retry & ~c 6xx9".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(screen(&mut app));
}

#[test]
fn a_filtered_list() {
    let mut app = app();
    press(&mut app, KeyCode::Char('f'));
    for c in "~kc retry | ~kc stop".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(screen(&mut app));
}

#[test]
fn the_help_screen() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&mut app));
}

#[test]
fn the_kinvey_summary() {
    let mut app = app();
    press(&mut app, KeyCode::Char('K'));
    insta::assert_snapshot!(screen(&mut app));
}

#[test]
fn the_kinvey_summary_scrolls_to_its_selected_row() {
    let mut app = app();
    let rows: Vec<kinspect::tui::state::SummaryRow> = (0..40)
        .map(|i| kinspect::tui::state::SummaryRow {
            error: format!("Error{i:02}"),
            badge: "FIX".into(),
            count: 1,
        })
        .collect();
    app.screen = Screen::KinveySummary { rows, selected: 0 };
    press(&mut app, KeyCode::End);
    let text = screen(&mut app);
    assert!(text.contains("Error39"), "{text}");
    assert!(!text.contains("Error00"), "{text}");
    press(&mut app, KeyCode::PageUp);
    press(&mut app, KeyCode::Home);
    assert!(screen(&mut app).contains("Error00"));
}

#[test]
fn a_support_report() {
    let mut app = app();
    press(&mut app, KeyCode::Char('g'));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    let effects = press(&mut app, KeyCode::Char('r'));
    run_effects(&mut app, effects);
    let text = screen(&mut app);
    assert!(!text.contains("session-token"), "the report is redacted");
    insta::assert_snapshot!(text);
}
