//! HLS output, plain: the master playlist `<manifestId>.m3u8` and one media
//! playlist `<streamId>.m3u8` per rendition, with segment files
//! `<streamId>_<seq>.ts`. Files end with `EXT-X-ENDLIST`; live input keeps a
//! sliding window.

use std::fmt::Write as _;

/// One rendition's entry in the master playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub stream_id: String,
    pub bandwidth: u32,
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
    /// HEVC renditions (else H.264).
    pub hevc: bool,
}

/// H.264 High, level 4.0 (what x264 `veryfast` writes for these sizes), or
/// HEVC Main, level 4.0 (x265's), and AAC-LC.
fn codecs(has_audio: bool, hevc: bool) -> String {
    let video = if hevc {
        "hvc1.1.6.L120.90"
    } else {
        "avc1.640028"
    };
    if has_audio {
        format!("{video},mp4a.40.2")
    } else {
        video.to_string()
    }
}

pub fn master_playlist(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:3\n");
    for v in variants {
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},RESOLUTION={}x{},CODECS=\"{}\"\n{}.m3u8",
            v.bandwidth,
            v.width,
            v.height,
            codecs(v.has_audio, v.hevc),
            v.stream_id
        );
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    seq: u64,
    seconds: f64,
    discontinuity: bool,
}

/// A media playlist being built segment by segment.
#[derive(Debug, Clone)]
pub struct MediaPlaylist {
    stream_id: String,
    entries: Vec<Entry>,
    /// Keep only the newest entries (live); `None` keeps all (files).
    window: Option<usize>,
    ended: bool,
    last_seq: Option<u64>,
}

impl MediaPlaylist {
    pub fn new(stream_id: &str, window: Option<usize>) -> Self {
        Self {
            stream_id: stream_id.to_string(),
            entries: Vec::new(),
            window,
            ended: false,
            last_seq: None,
        }
    }

    pub fn segment_name(&self, seq: u64) -> String {
        format!("{}_{seq}.ts", self.stream_id)
    }

    /// Adds segment `seq`; a gap since the previous one (a skipped segment) is
    /// marked as a discontinuity.
    pub fn push(&mut self, seq: u64, seconds: f64) {
        let discontinuity = self.last_seq.is_some_and(|last| seq != last + 1);
        self.last_seq = Some(seq);
        self.entries.push(Entry {
            seq,
            seconds,
            discontinuity,
        });
        if let Some(window) = self.window {
            let excess = self.entries.len().saturating_sub(window);
            self.entries.drain(..excess);
        }
    }

    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn render(&self) -> String {
        let target = self
            .entries
            .iter()
            .map(|e| e.seconds.ceil() as u64)
            .max()
            .unwrap_or(2)
            .max(1);
        let first = self.entries.first().map_or(0, |e| e.seq);
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{first}\n"
        );
        if self.window.is_none() && self.ended {
            // A finished file is video on demand; a live stream that ended keeps its window.
            out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n");
        }
        for entry in &self.entries {
            if entry.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                out,
                "#EXTINF:{:.3},\n{}",
                entry.seconds,
                self.segment_name(entry.seq)
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_playlists_list_segments_with_their_durations() {
        let mut playlist = MediaPlaylist::new("abcP360p30fps16x9", None);
        playlist.push(0, 2.0);
        playlist.push(1, 2.002);
        playlist.push(3, 1.5);
        playlist.end();
        assert_eq!(
            playlist.render(),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n\
             #EXTINF:2.000,\nabcP360p30fps16x9_0.ts\n#EXTINF:2.002,\nabcP360p30fps16x9_1.ts\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:1.500,\nabcP360p30fps16x9_3.ts\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn live_playlists_slide() {
        let mut playlist = MediaPlaylist::new("s", Some(3));
        for seq in 0..5 {
            playlist.push(seq, 2.0);
        }
        let text = playlist.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:2\n"), "{text}");
        assert_eq!(text.matches("#EXTINF").count(), 3);
        assert!(!text.contains("ENDLIST"));
    }

    #[test]
    fn master_lists_every_rendition() {
        let text = master_playlist(&[
            Variant {
                stream_id: "aP360".into(),
                bandwidth: 1_200_000,
                width: 640,
                height: 360,
                has_audio: true,
                hevc: false,
            },
            Variant {
                stream_id: "aP240".into(),
                bandwidth: 600_000,
                width: 426,
                height: 240,
                has_audio: false,
                hevc: false,
            },
        ]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=640x360,CODECS=\"avc1.640028,mp4a.40.2\"\naP360.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=600000,RESOLUTION=426x240,CODECS=\"avc1.640028\"\naP240.m3u8\n"
        );
    }
}
