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

#[test]
fn the_demo_ui_filters_opens_details_and_quits() {
    if !tool_available("tmux") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("kinspect-test-{}", std::process::id()),
    };
    let command = format!(
        "cd {home} && KINSPECT_HOME={home} {} demo --capture {home}/demo.db",
        env!("CARGO_BIN_EXE_kinspect"),
        home = home.path().display(),
    );
    tmux.start(&command, 160, 45);

    // The scripted app's traffic arrives live; the dictionary tour ends with BLInternalError.
    tmux.wait_for("the demo's flows", |s| {
        s.contains("STOP") && s.contains("BLInternalError")
    });

    tmux.keys(&["f"]);
    tmux.keys(&["-l", "~kc stop"]);
    tmux.keys(&["Enter"]);
    let filtered = tmux.wait_for("the filter to apply", |s| s.contains("filter ~kc stop"));
    let rows: Vec<&str> = filtered
        .lines()
        .filter(|l| l.contains("baas.kinvey.test"))
        .collect();
    assert!(!rows.is_empty(), "{filtered}");
    assert!(
        rows.iter().all(|r| r.contains("STOP")),
        "only STOP flows:\n{filtered}"
    );

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
