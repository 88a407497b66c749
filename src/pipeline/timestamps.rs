//! Timestamp repair, plain and unit-tested. Real segments carry pictures
//! without timestamps (a SEI after the slice hides them from FFmpeg's
//! parser), repeated or backward audio DTS, and the like; encoders and muxers
//! refuse those. Two repairs, each applied once where the timestamps enter
//! the next stage:
//!
//! - [`PictureClock`]: before an encoder, every picture gets a presentation
//!   time, strictly increasing; a missing one is the previous plus one frame.
//! - [`MonotonicDts`]: before the muxer, every packet's DTS is strictly
//!   increasing and never after its PTS, as ffmpeg.c does ("non-monotonic
//!   DTS; changing to last + 1").

/// Presentation times for the pictures fed to one encoder.
#[derive(Debug, Clone)]
pub struct PictureClock {
    /// One frame at the output rate, in the stream's time base (≥ 1).
    frame_ticks: i64,
    last: Option<i64>,
}

impl PictureClock {
    pub fn new(frame_ticks: i64) -> Self {
        Self {
            frame_ticks: frame_ticks.max(1),
            last: None,
        }
    }

    /// The time to encode this picture at: its own when it has one and it
    /// comes after the last, else the last plus one frame (or one tick, when
    /// the picture's own time is only slightly early, so the gap closes).
    pub fn stamp(&mut self, pts: Option<i64>) -> i64 {
        let stamped = match (pts, self.last) {
            (Some(pts), None) => pts,
            (None, None) => 0,
            (Some(pts), Some(last)) if pts > last => pts,
            (Some(_), Some(last)) => last + 1,
            (None, Some(last)) => last + self.frame_ticks,
        };
        self.last = Some(stamped);
        stamped
    }
}

/// DTS repair for the packets of one stream on their way to the muxer.
#[derive(Debug, Clone, Default)]
pub struct MonotonicDts {
    last_dts: Option<i64>,
    /// The last packet's duration, to place a packet that has no DTS.
    last_duration: i64,
}

impl MonotonicDts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Repaired (pts, dts) of a packet: DTS from the packet, else its PTS,
    /// else the last DTS plus the last duration; raised to last + 1 when it
    /// does not increase; PTS never before DTS (and taken from DTS when
    /// missing).
    pub fn fix(&mut self, pts: Option<i64>, dts: Option<i64>, duration: i64) -> (i64, i64) {
        let guess = self
            .last_dts
            .map(|last| last + self.last_duration.max(1))
            .unwrap_or(0);
        let mut fixed_dts = dts.or(pts).unwrap_or(guess);
        if let Some(last) = self.last_dts
            && fixed_dts <= last
        {
            fixed_dts = last + 1;
        }
        let fixed_pts = pts.map_or(fixed_dts, |pts| pts.max(fixed_dts));
        self.last_dts = Some(fixed_dts);
        if duration > 0 {
            self.last_duration = duration;
        }
        (fixed_pts, fixed_dts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_without_times_get_the_next_frame_time() {
        let mut clock = PictureClock::new(3000);
        let stamped: Vec<i64> = [Some(9000), Some(12000), None, Some(18000), None]
            .into_iter()
            .map(|pts| clock.stamp(pts))
            .collect();
        assert_eq!(stamped, [9000, 12000, 15000, 18000, 21000]);
    }

    #[test]
    fn picture_times_strictly_increase() {
        let mut clock = PictureClock::new(3000);
        // An invented time that the next real one repeats, and a backward one.
        let stamped: Vec<i64> = [Some(0), None, Some(3000), Some(1000), Some(9000)]
            .into_iter()
            .map(|pts| clock.stamp(pts))
            .collect();
        assert_eq!(stamped, [0, 3000, 3001, 3002, 9000]);
        assert!(stamped.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(PictureClock::new(0).stamp(None), 0);
    }

    #[test]
    fn repeated_dts_become_last_plus_one() {
        // duplicate-audio-dts.ts repeats audio DTS values.
        let mut fix = MonotonicDts::new();
        let out: Vec<(i64, i64)> = [
            (Some(100), Some(100)),
            (Some(2000), Some(2000)),
            (Some(2000), Some(2000)),
            (Some(3900), Some(3900)),
        ]
        .into_iter()
        .map(|(p, d)| fix.fix(p, d, 1920))
        .collect();
        assert_eq!(out, [(100, 100), (2000, 2000), (2001, 2001), (3900, 3900)]);
    }

    #[test]
    fn missing_dts_come_from_pts_or_the_last_packet() {
        let mut fix = MonotonicDts::new();
        assert_eq!(fix.fix(Some(6000), Some(3000), 3000), (6000, 3000));
        // No DTS: the PTS, raised above the last DTS if need be.
        assert_eq!(fix.fix(Some(9000), None, 3000), (9000, 9000));
        // Neither: last + duration.
        assert_eq!(fix.fix(None, None, 0), (12000, 12000));
        // PTS before DTS is raised to DTS.
        assert_eq!(fix.fix(Some(100), Some(15000), 3000), (15000, 15000));
        // Nothing at all at the start: zero.
        assert_eq!(MonotonicDts::new().fix(None, None, 0), (0, 0));
    }
}
