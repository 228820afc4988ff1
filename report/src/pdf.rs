//! PDF through headless Chromium: the printable page written to a temporary directory and
//! printed with `--print-to-pdf` (no header or footer, no sandbox: the page is Varde's own, local,
//! with no script). Used by `varde report --format pdf` and the dashboard's PDF downloads.

use std::path::Path;
use std::process::{Command, Stdio};

/// The Chromium program found on the PATH, if any.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Prints `html` to a PDF at `out`; an error says why (no Chromium, or it printed nothing).
pub fn print(html: &str, out: &Path) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let page = dir.path().join("report.html");
    std::fs::write(&page, html).map_err(|e| format!("writing the page: {e}"))?;
    let chromium = chromium()
        .ok_or("no Chromium found (Debian: apt-get install chromium) to print the PDF")?;
    let status = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("running Chromium: {e}"))?;
    let ok = std::fs::read(out).is_ok_and(|b| b.starts_with(b"%PDF-"));
    if !status.success() || !ok {
        return Err(format!(
            "Chromium did not print {} ({status})",
            out.display()
        ));
    }
    Ok(())
}

/// Prints `html` and returns the PDF's bytes.
pub fn bytes(html: &str) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory: {e}"))?;
    let out = dir.path().join("report.pdf");
    print(html, &out)?;
    std::fs::read(&out).map_err(|e| format!("reading the PDF: {e}"))
}
