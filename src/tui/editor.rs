//! Handing the terminal to the user's editor (`$VISUAL`, `$EDITOR`, else `vi`) for a
//! text to change, the UI suspended meanwhile and restored however the editor ends.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What the user did with the text.
#[derive(Debug, PartialEq, Eq)]
pub enum Edited {
    /// Saved it: the text as the editor left it.
    Saved(String),
    /// Gave it up, or the editor failed: why, in words.
    Abandoned(String),
}

/// The editor the user asked for: `$VISUAL`, else `$EDITOR`, else `vi`.
fn editor() -> String {
    ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|editor| !editor.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned())
}

/// The terminal given back to the shell's ways (cooked mode, main screen) while it
/// lives; the UI's ways again when dropped, whatever happened in between. Ctrl-C in an
/// editor that leaves the terminal cooked stops that editor, not kinspect.
struct Suspended {
    interrupt: Option<signal_hook::SigId>,
}

impl Suspended {
    fn new() -> std::io::Result<Suspended> {
        // A handler, unlike an ignored signal, is reset to the default in the editor.
        let interrupt = signal_hook::flag::register(
            signal_hook::consts::SIGINT,
            Arc::new(AtomicBool::new(false)),
        )
        .ok();
        // The guard first: it restores the terminal however far this gets.
        let suspended = Suspended { interrupt };
        crossterm::terminal::disable_raw_mode()?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::event::DisableBracketedPaste,
            crossterm::terminal::LeaveAlternateScreen,
            crossterm::cursor::Show
        )?;
        Ok(suspended)
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        let _ = crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::event::EnableBracketedPaste
        );
        let _ = crossterm::terminal::enable_raw_mode();
        if let Some(id) = self.interrupt.take() {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Lets the user change `text` in their editor, in a file named `*.suffix`. An empty
/// file or an editor that fails is [`Edited::Abandoned`].
pub fn edit(
    terminal: &mut ratatui::DefaultTerminal,
    text: &str,
    suffix: &str,
) -> anyhow::Result<Edited> {
    let mut file = tempfile::Builder::new()
        .prefix("kinspect-")
        .suffix(suffix)
        .tempfile()?;
    file.write_all(text.as_bytes())?;
    file.flush()?;
    let editor = editor();
    let status = {
        let _suspended = Suspended::new()?;
        // Through the shell: $EDITOR may carry arguments (`code --wait`).
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(file.path())
            .status()
    };
    // The next frame is drawn whole, over whatever the editor left on the screen.
    let _ = terminal.clear();
    let status = status.map_err(|e| anyhow::anyhow!("cannot start a shell for the editor: {e}"))?;
    match status.code() {
        Some(0) => {}
        Some(127) => {
            return Ok(Edited::Abandoned(format!(
                "the editor {editor:?} was not found: set $VISUAL or $EDITOR"
            )))
        }
        _ => {
            return Ok(Edited::Abandoned(format!(
                "the editor {editor:?} failed ({status})"
            )))
        }
    }
    // Read by path: editors that save by renaming leave the open file behind.
    let edited = std::fs::read_to_string(file.path())
        .map_err(|e| anyhow::anyhow!("cannot read the edited file back: {e}"))?;
    if edited.trim().is_empty() {
        return Ok(Edited::Abandoned("the file was left empty".into()));
    }
    Ok(Edited::Saved(edited))
}
