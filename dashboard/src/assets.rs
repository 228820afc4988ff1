//! The styles and scripts the dashboard serves, embedded in the binary so that it works
//! air-gapped (no CDN): Digdir's Designsystemet (components and the Digdir theme) and uPlot (the
//! charts), both MIT, vendored from the npm registry by `assets/vendor.sh` with
//! `assets/npm/package-lock.json`; and Varde's layout sheet and small scripts.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Designsystemet's component styles.
pub const COMPONENTS: &str = include_str!("../assets/designsystemet.css");
/// Designsystemet's Digdir theme (colours, type, sizes as CSS variables).
pub const THEME: &str = include_str!("../assets/theme.css");
/// Varde's layout on top of the two.
pub const VARDE: &str = include_str!("../assets/varde.css");
/// uPlot, the overview's chart library (MIT, vendored like Designsystemet).
pub const UPLOT_JS: &str = include_str!("../assets/uplot.js");
/// uPlot's styles.
pub const UPLOT_CSS: &str = include_str!("../assets/uplot.css");
/// uPlot's licence.
pub const UPLOT_LICENSE: &str = include_str!("../assets/LICENSE.uplot");
/// Draws the overview's charts with uPlot.
pub const CHARTS: &str = include_str!("../assets/charts.js");
/// The live queue's script (progressive enhancement).
pub const LIVE: &str = include_str!("../assets/live.js");
/// Designsystemet's licence (MIT), served beside its files.
pub const LICENSE: &str = include_str!("../assets/LICENSE.designsystemet");
/// What `vendor.sh` wrote: versions and SHA-256 of the vendored files (served, for provenance).
pub const VENDORED: &str = include_str!("../assets/VENDORED");

/// Where pages link them.
pub const COMPONENTS_URL: &str = "/assets/designsystemet.css";
/// See [`COMPONENTS_URL`].
pub const THEME_URL: &str = "/assets/theme.css";
/// See [`COMPONENTS_URL`].
pub const VARDE_URL: &str = "/assets/varde.css";
/// See [`COMPONENTS_URL`].
pub const LIVE_URL: &str = "/assets/live.js";
/// See [`COMPONENTS_URL`].
pub const UPLOT_JS_URL: &str = "/assets/uplot.js";
/// See [`COMPONENTS_URL`].
pub const UPLOT_CSS_URL: &str = "/assets/uplot.css";
/// See [`COMPONENTS_URL`].
pub const CHARTS_URL: &str = "/assets/charts.js";

/// `GET /assets/{name}`: the embedded files, cached by browsers for an hour.
pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "designsystemet.css" => (COMPONENTS, "text/css; charset=utf-8"),
        "theme.css" => (THEME, "text/css; charset=utf-8"),
        "varde.css" => (VARDE, "text/css; charset=utf-8"),
        "live.js" => (LIVE, "text/javascript; charset=utf-8"),
        "uplot.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uplot.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        "charts.js" => (CHARTS, "text/javascript; charset=utf-8"),
        "LICENSE.uplot" => (UPLOT_LICENSE, "text/plain; charset=utf-8"),
        "LICENSE.designsystemet" => (LICENSE, "text/plain; charset=utf-8"),
        "VENDORED" => (VENDORED, "text/plain; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// The embedded files are exactly what `vendor.sh` fetched (no hand edits), and the
    /// versions are those the lockfile pins.
    #[test]
    fn vendored_files_are_what_the_lockfile_fetched() {
        let lock = include_str!("../assets/npm/package-lock.json");
        for (name, body) in [
            ("designsystemet.css", COMPONENTS),
            ("theme.css", THEME),
            ("LICENSE.designsystemet", LICENSE),
            ("uplot.js", UPLOT_JS),
            ("uplot.css", UPLOT_CSS),
            ("LICENSE.uplot", UPLOT_LICENSE),
        ] {
            let line = VENDORED
                .lines()
                .find(|l| l.ends_with(&format!(" {name}")))
                .unwrap_or_else(|| panic!("{name} is not in VENDORED"));
            let digest: String = Sha256::digest(body.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(line, format!("sha256 {digest} {name}"));
        }
        for package in [
            "@digdir/designsystemet-css",
            "@digdir/designsystemet-theme",
            "uplot",
        ] {
            let version = VENDORED
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{package} ")))
                .unwrap_or_else(|| panic!("{package} is not in VENDORED"));
            assert!(
                lock.contains(&format!(
                    "\"node_modules/{package}\": {{\n      \"version\": \"{version}\""
                )),
                "{package} {version} is not what the lockfile pins"
            );
        }
        assert!(LICENSE.contains("Digitaliseringsdirektoratet"));
        assert!(COMPONENTS.contains("@layer ds.components"));
    }
}
