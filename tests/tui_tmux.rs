//! End to end: the `kinspect demo` UI in a real terminal (tmux), driven by keys and read
//! back from the screen. CI installs tmux; locally a missing tmux skips with a reason.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::tool_available;

/// A tmux server of this test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `command` in a detached session "kinspect" of `width` x `height`.
    fn start(&self, command: &str, width: u16, height: u16) {
        let (width, height) = (width.to_string(), height.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            "kinspect",
            "-x",
            &width,
            "-y",
            &height,
            command,
        ]);
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "kinspect"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "kinspect"])
    }

    /// Waits until the screen satisfies `ready`; panics with the screen otherwise.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; the screen shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

impl Tmux {
    /// Starts kinspect's UI, its proxy on a free port with its CA and capture in `home`
    /// (`env`, `NAME=value ...`, before the command), and returns the proxy's port as
    /// the status bar shows it.
    fn start_proxy(&self, home: &std::path::Path, env: &str, width: u16, height: u16) -> u16 {
        let command = format!(
            "{env} KINSPECT_HOME={home} {} --listen 127.0.0.1:0 --ca-dir {home}/ca --capture {home}/c.db",
            env!("CARGO_BIN_EXE_kinspect"),
            home = home.display(),
        );
        self.start(&command, width, height);
        let screen = self.wait_for("the proxy's address", |s| s.contains("proxy http://"));
        regex::Regex::new(r"proxy http://127\.0\.0\.1:(\d+)")
            .unwrap()
            .captures(&screen)
            .and_then(|c| c[1].parse().ok())
            .unwrap_or_else(|| panic!("no proxy address on the screen:\n{screen}"))
    }
}

#[test]
fn the_demo_ui_filters_opens_details_and_quits() {
    if !tool_available("tmux") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("kinspect-test-{}", std::process::id()),
    };
    // --filter is the UI's filter from the start.
    let command = format!(
        "cd {home} && KINSPECT_HOME={home} {} demo --capture {home}/demo.db --filter '~kc fix'",
        env!("CARGO_BIN_EXE_kinspect"),
        home = home.path().display(),
    );
    tmux.start(&command, 160, 45);
    let only = |class: &str, screen: &str| {
        let rows: Vec<&str> = screen
            .lines()
            .filter(|l| l.contains("baas.kinvey.test"))
            .collect();
        assert!(!rows.is_empty(), "{screen}");
        assert!(
            rows.iter().all(|r| r.contains(class)),
            "only {class} flows:\n{screen}"
        );
    };
    let started = tmux.wait_for("the demo's FIX flows", |s| {
        s.contains("filter ~kc fix") && s.contains("FIX")
    });
    only("FIX", &started);

    // The scripted app's traffic arrives live; the dictionary tour ends with BLInternalError.
    // The prompt opens on the filter in force: cleared first.
    tmux.keys(&["f", "C-u"]);
    tmux.keys(&["-l", "~kc stop"]);
    tmux.keys(&["Enter"]);
    let filtered = tmux.wait_for("the filter to apply", |s| {
        s.contains("filter ~kc stop") && s.contains("BLInternalError")
    });
    only("STOP", &filtered);

    tmux.keys(&["g", "Enter", "3"]);
    let kinvey_tab = tmux.wait_for("the Kinvey tab", |s| s.contains("What to do"));
    assert!(
        kinvey_tab.contains("contact Kinvey support"),
        "{kinvey_tab}"
    );

    tmux.keys(&["q", "?"]);
    tmux.wait_for("the help", |s| s.contains("Filter expressions"));
    tmux.keys(&["q", "Q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.run(&["list-sessions"]).contains("kinspect") {
        assert!(Instant::now() < deadline, "kinspect did not quit on Q");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !home.path().join("demo.db-wal").exists(),
        "quitting closes the capture as one file"
    );
}

#[test]
fn closing_the_terminal_quits_the_ui_cleanly() {
    if !tool_available("tmux") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let temp = home.path().join("tmp");
    std::fs::create_dir(&temp).unwrap();
    let har = home.path().join("shared.har");
    std::fs::write(
        &har,
        r#"{"log":{"version":"1.2","entries":[{"startedDateTime":"2026-11-20T10:00:00Z",
            "request":{"method":"GET","url":"https://kvy.example/appdata/kid_x/books"},
            "response":{"status":200}}]}}"#,
    )
    .unwrap();
    let tmux = Tmux {
        socket: format!("kinspect-test-hup-{}", std::process::id()),
    };
    // A HAR is opened through a temporary capture, made under TMPDIR.
    let command = format!(
        "TMPDIR={temp} KINSPECT_HOME={home} {} open {har}",
        env!("CARGO_BIN_EXE_kinspect"),
        temp = temp.display(),
        home = home.path().display(),
        har = har.display(),
    );
    tmux.start(&command, 120, 30);
    let screen = tmux.wait_for("the HAR's flow", |s| s.contains("kvy.example"));
    assert!(
        screen.contains("HAR ") && screen.contains("shared.har"),
        "the status bar names the HAR, not its temporary capture:\n{screen}"
    );
    assert_eq!(
        std::fs::read_dir(&temp).unwrap().count(),
        1,
        "the temporary capture"
    );
    // The terminal goes away: the UI gets SIGHUP.
    tmux.run(&["kill-session", "-t", "kinspect"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&temp).unwrap().count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the temporary capture was left behind"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_request_still_waiting_for_its_answer_is_listed_then_finished_in_place() {
    if !tool_available("tmux") {
        return;
    }
    use std::io::{BufRead, BufReader, Read, Write};
    // An origin that answers its one request only when told.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_port = origin.local_addr().unwrap().port();
    let (answer, answer_now) = std::sync::mpsc::channel::<()>();
    let origin_thread = std::thread::spawn(move || {
        let (stream, _) = origin.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let _ = answer_now.recv_timeout(Duration::from_secs(60));
        let _ = reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    });

    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("kinspect-test-inflight-{}", std::process::id()),
    };
    let port = tmux.start_proxy(home.path(), "", 150, 20);

    let client = std::thread::spawn(move || {
        let mut proxy = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let request = format!(
            "GET http://127.0.0.1:{origin_port}/hanging HTTP/1.1\r\nhost: 127.0.0.1:{origin_port}\r\nconnection: close\r\n\r\n"
        );
        proxy.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        proxy.read_to_string(&mut response).unwrap();
        response
    });
    let row = |s: &str| {
        s.lines()
            .find(|l| l.contains("/hanging"))
            .map(str::to_owned)
    };
    let waiting = tmux.wait_for("the request under way", |s| {
        row(s).is_some_and(|r| r.contains("..."))
    });
    assert!(!client.is_finished(), "listed while it waits:\n{waiting}");
    answer.send(()).unwrap();
    let done = tmux.wait_for("the answer", |s| {
        row(s).is_some_and(|r| r.contains(" 200 "))
    });
    assert_eq!(
        done.lines().filter(|l| l.contains("/hanging")).count(),
        1,
        "one row, finished in place:\n{done}"
    );
    assert!(client.join().unwrap().starts_with("HTTP/1.1 200"));
    origin_thread.join().unwrap();
    tmux.keys(&["Q"]);
}

#[cfg(unix)]
#[test]
fn e_sends_the_request_again_as_changed_in_the_editor_and_capital_r_as_it_was() {
    if !tool_available("tmux") {
        return;
    }
    use std::io::{BufRead, BufReader, Read, Write};
    // An origin that answers every request and hands over what it received.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_port = origin.local_addr().unwrap().port();
    let (received, requests) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in origin.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let (mut head, mut line) = (String::new(), String::new());
            let mut length = 0;
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                head.push_str(&line);
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = received.send(format!("{head}\n{}", String::from_utf8_lossy(&body)));
        }
    });

    let home = tempfile::tempdir().unwrap();
    // The editor the test scripts: it fails, empties the file, writes a broken request
    // (then, shown the error, a good one), or changes the method and the year.
    let editor = home.path().join("edit.sh");
    std::fs::write(
        &editor,
        r#"#!/bin/sh
dir=$(dirname "$0")
if [ -e "$dir/fail" ]; then exit 3; fi
if [ -e "$dir/empty" ]; then : > "$1"; exit 0; fi
if [ -e "$dir/broken" ]; then rm "$dir/broken"; echo 'NOT A REQUEST' > "$1"; exit 0; fi
if [ -e "$dir/next" ]; then
  grep -q '^# kinspect could not read this request: line' "$1" && mv "$dir/next" "$1"
  exit 0
fi
if [ -e "$dir/keep" ]; then exit 0; fi
sed -e 's/"1965"/1965/' -e 's/^POST /PUT /' "$1" > "$1.new" && mv "$1.new" "$1"
"#,
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&editor).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&editor, permissions).unwrap();
    let tmux = Tmux {
        socket: format!("kinspect-test-replay-{}", std::process::id()),
    };
    let port = tmux.start_proxy(
        home.path(),
        &format!("VISUAL= EDITOR={}", editor.display()),
        150,
        20,
    );

    let body = r#"{"year":"1965"}"#;
    let mut proxy = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "POST http://127.0.0.1:{origin_port}/books HTTP/1.1\r\nhost: 127.0.0.1:{origin_port}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    proxy.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    proxy.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let first = requests.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.starts_with("POST /books HTTP/1.1") && first.ends_with(body),
        "{first}"
    );
    tmux.wait_for("the flow", |s| s.contains("/books"));

    tmux.keys(&["e"]);
    let changed = requests.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(changed.starts_with("PUT /books HTTP/1.1"), "{changed}");
    assert!(changed.ends_with("\n{\"year\":1965}"), "{changed}");
    assert!(changed.contains("content-length: 13"), "{changed}");
    let screen = tmux.wait_for("the changed request's flow", |s| {
        s.contains("flow 1 sent again as flow 2: 200") && s.contains("PUT")
    });
    assert_eq!(screen.matches("/books").count(), 2, "{screen}");

    tmux.keys(&["g", "R"]);
    let again = requests.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(
        again.starts_with("POST /books HTTP/1.1") && again.ends_with(body),
        "{again}"
    );
    let screen = tmux.wait_for("the third flow and how it went", |s| {
        s.matches("/books").count() == 3 && s.contains("flow 1 sent again as flow 3: 200")
    });
    assert_eq!(
        screen.matches("↻ /books").count(),
        2,
        "replays marked:\n{screen}"
    );

    // An editor that fails, or a file left empty, sends nothing and says why.
    let marker = |name: &str| home.path().join(name);
    std::fs::write(marker("fail"), "").unwrap();
    tmux.keys(&["e"]);
    tmux.wait_for("the failure", |s| s.contains("failed (exit status: 3)"));
    std::fs::remove_file(marker("fail")).unwrap();
    std::fs::write(marker("empty"), "").unwrap();
    tmux.keys(&["e"]);
    tmux.wait_for("the empty file", |s| s.contains("the file was left empty"));
    std::fs::remove_file(marker("empty")).unwrap();
    // A request that cannot be read goes back to the editor with the error on top.
    std::fs::write(marker("broken"), "").unwrap();
    std::fs::write(
        marker("next"),
        format!("GET http://127.0.0.1:{origin_port}/fixed\n\n"),
    )
    .unwrap();
    tmux.keys(&["e"]);
    let fixed = requests.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(fixed.starts_with("GET /fixed HTTP/1.1"), "{fixed}");
    assert!(!marker("next").exists(), "the editor was shown the error");
    assert!(
        requests.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing else was sent"
    );
    // Shown the error, an editor quit without saving: kinspect gives up, no loop.
    std::fs::write(marker("broken"), "").unwrap();
    std::fs::write(marker("keep"), "").unwrap();
    tmux.keys(&["e"]);
    tmux.wait_for("giving up", |s| s.contains("the editor left it unchanged"));
    assert!(requests.recv_timeout(Duration::from_millis(300)).is_err());
    tmux.keys(&["Q"]);
}

#[test]
fn an_open_websockets_messages_show_as_they_come() {
    if !tool_available("tmux") {
        return;
    }
    use std::io::{BufRead, BufReader, Read, Write};
    /// An unmasked text frame, as a server sends it.
    fn text_frame(text: &str) -> Vec<u8> {
        let mut frame = vec![0x81, text.len() as u8];
        frame.extend_from_slice(text.as_bytes());
        frame
    }
    // A WebSocket origin that greets at once and sends a second message when told.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin_port = origin.local_addr().unwrap().port();
    let (next, send_next) = std::sync::mpsc::channel::<()>();
    let origin_thread = std::thread::spawn(move || {
        let (stream, _) = origin.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let stream = reader.get_mut();
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                  Upgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            )
            .unwrap();
        stream.write_all(&text_frame("first hello")).unwrap();
        let _ = send_next.recv_timeout(Duration::from_secs(60));
        stream.write_all(&text_frame("second hello")).unwrap();
        let _ = send_next.recv_timeout(Duration::from_secs(60));
    });

    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("kinspect-test-live-ws-{}", std::process::id()),
    };
    let port = tmux.start_proxy(home.path(), "", 150, 24);
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "GET http://127.0.0.1:{origin_port}/live HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    client.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    client.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");

    // Listed while open (switched, its time running); its detail shows the messages so
    // far, and then the next.
    tmux.wait_for("the open WebSocket", |s| {
        s.lines()
            .any(|l| l.contains("/live") && l.contains(" 101 "))
    });
    tmux.keys(&["G", "Enter", "2"]);
    let shown = tmux.wait_for("the first message", |s| s.contains("first hello"));
    assert!(shown.contains("101 Switching Protocols"), "{shown}");
    assert!(!shown.contains("second hello"));
    next.send(()).unwrap();
    tmux.wait_for("the second message, live", |s| {
        s.contains("second hello") && s.contains("WebSocket messages: 2")
    });
    drop(client);
    next.send(()).unwrap();
    origin_thread.join().unwrap();
    tmux.keys(&["Q"]);
}

#[test]
fn a_viewer_left_reading_a_stopped_capture_takes_it_out_of_wal_mode_when_it_quits() {
    if !tool_available("tmux") {
        return;
    }
    use kinspect::capture::{CaptureWriter, StoredFlow};
    let home = tempfile::tempdir().unwrap();
    let capture = home.path().join("c.db");
    let wal = home.path().join("c.db-wal");
    let mut writer = CaptureWriter::open(&capture).unwrap();
    let mut write = |id, host: &str| {
        let client = "127.0.0.1:5000".parse().unwrap();
        let url = format!("http://{host}/");
        let flow = kinspect::flow::Flow::exchange(id, client, "GET", &url, Some(200));
        writer
            .write_batch(&[StoredFlow {
                flow,
                kinvey: Default::default(),
            }])
            .unwrap();
    };
    write(1, "seen.test");
    let tmux = Tmux {
        socket: format!("kinspect-test-wal-{}", std::process::id()),
    };
    let command = format!(
        "KINSPECT_HOME={home} {} open {capture}",
        env!("CARGO_BIN_EXE_kinspect"),
        home = home.path().display(),
        capture = capture.display(),
    );
    tmux.start(&command, 120, 30);
    tmux.wait_for("the flow", |s| s.contains("seen.test"));
    // Followed as it grows: the viewer has the file open.
    write(2, "followed.test");
    tmux.wait_for("the new flow", |s| s.contains("followed.test"));
    // The recording ends while the viewer reads: the file stays in WAL mode.
    drop(writer);
    assert!(wal.exists(), "the writer could not switch WAL mode off");
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() {
        assert!(Instant::now() < deadline, "the viewer left the -wal file");
        std::thread::sleep(Duration::from_millis(50));
    }
    let conn = rusqlite::Connection::open(&capture).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let flows: i64 = conn
        .query_row("SELECT count(*) FROM flows", [], |row| row.get(0))
        .unwrap();
    assert_eq!(flows, 2);
}
