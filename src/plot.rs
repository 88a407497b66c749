//! The sizing plot of `lpgpu bench --concurrency A..B --plot FILE.svg`: the
//! real-time ratio against sessions, the sizing rule's line, the chosen
//! session count marked, and a baseline's curve when one was run. Plain
//! string building into a standalone SVG document; no I/O.

use std::fmt::Write;

/// One curve: (sessions, real-time ratio) points, in order.
#[derive(Debug, Clone)]
pub struct Curve<'a> {
    pub label: &'a str,
    pub points: &'a [(usize, f64)],
}

/// What the plot shows.
#[derive(Debug, Clone)]
pub struct SizingPlot<'a> {
    /// The first line of the title (machine and backend).
    pub title: &'a str,
    pub lpgpu: Curve<'a>,
    pub baseline: Option<Curve<'a>>,
    /// The sizing rule (0.8): at or under it a rig has Livepeer's headroom.
    pub rule: f64,
    /// The largest session count within the rule, when one is.
    pub chosen: Option<usize>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 60.0;

/// `text` safe inside an XML element or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A step for axis ticks: 1, 2 or 5 × 10ⁿ, giving about `ticks` ticks.
fn nice_step(span: f64, ticks: f64) -> f64 {
    let raw = (span / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

impl SizingPlot<'_> {
    /// The SVG document.
    pub fn svg(&self) -> String {
        let all = self
            .lpgpu
            .points
            .iter()
            .chain(self.baseline.iter().flat_map(|c| c.points.iter()));
        let (mut x_min, mut x_max, mut y_max) = (usize::MAX, 0usize, self.rule);
        for &(x, y) in all {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            if y.is_finite() {
                y_max = y_max.max(y);
            }
        }
        if x_min > x_max {
            (x_min, x_max) = (1, 1);
        }
        let x_span = (x_max - x_min).max(1) as f64;
        let y_step = nice_step(y_max * 1.1, 6.0);
        let y_top = (y_max * 1.1 / y_step).ceil() * y_step;
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: usize| LEFT + (x.saturating_sub(x_min)) as f64 / x_span * plot_w;
        let sy = |y: f64| TOP + plot_h - (y.clamp(0.0, y_top) / y_top) * plot_h;

        let mut svg = String::new();
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        svg.push_str(r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
        let _ = write!(
            svg,
            r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
            escape(self.title)
        );
        let subtitle = match self.chosen {
            Some(n) => format!(
                "real-time ratio against sessions; chosen: {n} sessions (ratio ≤ {})",
                self.rule
            ),
            None => format!(
                "real-time ratio against sessions; no session count stays within {}",
                self.rule
            ),
        };
        let _ = write!(
            svg,
            r##"<text x="{LEFT}" y="44" fill="#444">{}</text>"##,
            escape(&subtitle)
        );
        // Axes, grid and ticks.
        let _ = write!(
            svg,
            r##"<g stroke="#999" stroke-width="1"><line x1="{LEFT}" y1="{}" x2="{}" y2="{}"/><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/></g>"##,
            TOP + plot_h,
            LEFT + plot_w,
            TOP + plot_h,
            TOP + plot_h
        );
        let mut y = 0.0;
        while y <= y_top + 1e-9 {
            let py = sy(y);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{y:.2}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                py + 4.0
            );
            y += y_step;
        }
        let x_step = nice_step(x_span, 10.0).max(1.0) as usize;
        let mut x = x_min;
        while x <= x_max {
            let px = sx(x);
            let _ = write!(
                svg,
                r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{x}</text>"#,
                TOP + plot_h + 18.0
            );
            x += x_step;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">sessions</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 16.0
        );
        let _ = write!(
            svg,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">real-time ratio (lower is faster)</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0
        );
        // The sizing rule.
        let rule_y = sy(self.rule);
        let _ = write!(
            svg,
            r##"<line id="sizing-rule" x1="{LEFT}" y1="{rule_y:.1}" x2="{:.1}" y2="{rule_y:.1}" stroke="#c62828" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" fill="#c62828" text-anchor="end">sizing rule {}</text>"##,
            LEFT + plot_w,
            LEFT + plot_w - 4.0,
            rule_y - 6.0,
            self.rule
        );
        // The chosen count.
        if let Some(n) = self.chosen {
            let px = sx(n);
            // The label goes on the side with room.
            let (label_x, anchor) = if px > LEFT + 0.75 * plot_w {
                (px - 4.0, "end")
            } else {
                (px + 4.0, "start")
            };
            let _ = write!(
                svg,
                r##"<line id="chosen" x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#2e7d32" stroke-dasharray="3 3"/><text x="{label_x:.1}" y="{:.1}" fill="#2e7d32" text-anchor="{anchor}">chosen: {n}</text>"##,
                TOP + plot_h,
                TOP + plot_h - 8.0
            );
        }
        let mut curve = |c: &Curve<'_>, colour: &str, dash: &str, id: &str| {
            let points: Vec<String> = c
                .points
                .iter()
                .filter(|(_, y)| y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline id="{id}" fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
                points.join(" ")
            );
            for &(x, y) in c.points.iter().filter(|(_, y)| y.is_finite()) {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{}: {x} sessions, ratio {y:.3}</title></circle>"#,
                    sx(x),
                    sy(y),
                    escape(c.label)
                );
            }
        };
        if let Some(baseline) = &self.baseline {
            curve(baseline, "#757575", "5 4", "baseline");
        }
        curve(&self.lpgpu, "#1565c0", "none", "lpgpu");
        // Legend.
        let mut legend = vec![(self.lpgpu.label, "#1565c0")];
        if let Some(b) = &self.baseline {
            legend.push((b.label, "#757575"));
        }
        for (i, (label, colour)) in legend.into_iter().enumerate() {
            let ly = TOP + 14.0 + 18.0 * i as f64;
            let lx = LEFT + 12.0;
            let _ = write!(
                svg,
                r#"<rect x="{lx}" y="{:.1}" width="14" height="4" fill="{colour}"/><text x="{:.1}" y="{ly:.1}">{}</text>"#,
                ly - 5.0,
                lx + 20.0,
                escape(label)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_marks_the_rule_and_the_chosen_count() {
        let points = [(1, 0.3), (2, 0.55), (3, 0.79), (4, 1.1)];
        let baseline = [(1, 0.5), (2, 0.9)];
        let svg = SizingPlot {
            title: "Intel Xeon, 2 cores <cpu backend>",
            lpgpu: Curve {
                label: "lpgpu",
                points: &points,
            },
            baseline: Some(Curve {
                label: "ffmpeg CLI",
                points: &baseline,
            }),
            rule: 0.8,
            chosen: Some(3),
        }
        .svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("chosen: 3 sessions"));
        assert!(svg.contains(r#"id="sizing-rule""#) && svg.contains(r#"id="baseline""#));
        // The title is escaped.
        assert!(svg.contains("&lt;cpu backend&gt;"));
        assert_eq!(svg.matches("<circle").count(), 6);
    }

    #[test]
    fn ticks_are_round_and_one_point_still_draws() {
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(nice_step(7.0, 10.0), 1.0);
        assert_eq!(nice_step(90.0, 10.0), 10.0);
        let svg = SizingPlot {
            title: "t",
            lpgpu: Curve {
                label: "lpgpu",
                points: &[(1, f64::NAN)],
            },
            baseline: None,
            rule: 0.8,
            chosen: None,
        }
        .svg();
        assert!(svg.contains("no session count stays within 0.8"));
    }
}
