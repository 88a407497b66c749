//! The orchestrator's side of `POST /transcodeResults` (`spec/ot-protocol.md`)
//! as plain code: the header checks in go-livepeer's order and statuses, the
//! media-type parameters, and a streaming `multipart/mixed` reader that is fed
//! the body chunk by chunk, keeps at most a delimiter's length of carry-over,
//! and refuses parts, headers or part counts past fixed bounds. No I/O.

use bytes::{Bytes, BytesMut};

/// The `Authorization` a transcoder sends.
pub const TRANSCODER_AUTHORIZATION: &str = "Livepeer-Transcoder-1.0";
/// The content type of an error result.
pub const TRANSCODING_ERROR: &str = "livepeer/transcoding-error";
/// The largest part (go-livepeer's cap on a rendition).
pub const MAX_PART_BYTES: usize = 300_000_000;
/// Header block of one part.
pub const MAX_PART_HEADER_BYTES: usize = 16 * 1024;
/// Parts in one body (renditions and their hashes).
pub const MAX_PARTS: usize = 64;

/// The request headers the checks read; `None` when absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResultHeaders<'a> {
    pub authorization: Option<&'a str>,
    pub credentials: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub pixels: Option<&'a str>,
}

/// What the headers say the body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultBody {
    /// `livepeer/transcoding-error`: the body is the error text.
    Error { task_id: i64 },
    /// Renditions: the body is `multipart/mixed` with this boundary.
    Renditions {
        task_id: i64,
        pixels: i64,
        boundary: String,
    },
    /// Any other content type: answered 200 and nothing is delivered (the
    /// task later times out), as go-livepeer does.
    Ignored { task_id: i64, media_type: String },
}

/// A refusal, with go-livepeer's status and text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultRejection {
    #[error("Unauthorized")]
    BadAuthorization,
    #[error("Unauthorized")]
    BadCredentials,
    #[error("Unsupported Media Type")]
    BadContentType,
    #[error("Invalid Task ID")]
    BadTaskId,
    #[error("Invalid Pixels")]
    BadPixels,
}

impl ResultRejection {
    /// A stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ResultRejection::BadAuthorization => "bad_authorization",
            ResultRejection::BadCredentials => "bad_credentials",
            ResultRejection::BadContentType => "bad_content_type",
            ResultRejection::BadTaskId => "bad_task_id",
            ResultRejection::BadPixels => "bad_pixels",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ResultRejection::BadAuthorization | ResultRejection::BadCredentials => 401,
            ResultRejection::BadContentType => 415,
            ResultRejection::BadTaskId | ResultRejection::BadPixels => 400,
        }
    }
}

/// Checks a result upload's headers against the orchestrator `secret`, in
/// go-livepeer's order: Authorization, Credentials (401), a parsable content
/// type (415), an integer TaskId (400 `Invalid Task ID`); the error type is
/// then accepted as is; otherwise an integer Pixels (400 `Invalid Pixels`),
/// and `multipart/mixed` needs a boundary.
pub fn check_result_headers(
    headers: &ResultHeaders<'_>,
    secret: &str,
) -> Result<ResultBody, ResultRejection> {
    if headers.authorization.map(str::trim) != Some(TRANSCODER_AUTHORIZATION) {
        return Err(ResultRejection::BadAuthorization);
    }
    // Constant-time: the secret is the whole of the authentication.
    if !headers
        .credentials
        .is_some_and(|c| constant_time_eq(c.as_bytes(), secret.as_bytes()))
    {
        return Err(ResultRejection::BadCredentials);
    }
    let media = parse_media_type(headers.content_type.unwrap_or(""))
        .ok_or(ResultRejection::BadContentType)?;
    let task_id = parse_integer(headers.task_id).ok_or(ResultRejection::BadTaskId)?;
    if media.essence == TRANSCODING_ERROR {
        return Ok(ResultBody::Error { task_id });
    }
    let pixels = parse_integer(headers.pixels).ok_or(ResultRejection::BadPixels)?;
    if media.essence == "multipart/mixed" {
        let boundary = media
            .parameter("boundary")
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or(ResultRejection::BadContentType)?
            .to_string();
        return Ok(ResultBody::Renditions {
            task_id,
            pixels,
            boundary,
        });
    }
    Ok(ResultBody::Ignored {
        task_id,
        media_type: media.essence,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A decimal integer header (Go's `strconv.ParseInt(s, 10, 64)`: an optional
/// sign, digits, nothing else).
pub fn parse_integer(value: Option<&str>) -> Option<i64> {
    let text = value?;
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A parsed `type/subtype; name=value; …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lower-cased.
    pub essence: String,
    /// Parameters: names lower-cased, values unquoted.
    pub parameters: Vec<(String, String)>,
}

impl MediaType {
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_token(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Parses a media type as Go's `mime.ParseMediaType` does in the cases that
/// matter here: a token `/` token, then `;`-separated `name=value`
/// parameters whose values are tokens or quoted strings; a duplicate
/// parameter or any malformed piece is an error (None).
pub fn parse_media_type(text: &str) -> Option<MediaType> {
    let (essence, mut rest) = match text.find(';') {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let essence = essence.trim();
    let (kind, subtype) = essence.split_once('/')?;
    if kind.is_empty()
        || subtype.is_empty()
        || !kind.chars().all(is_token)
        || !subtype.chars().all(is_token)
    {
        return None;
    }
    let mut parameters: Vec<(String, String)> = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(after) = rest.strip_prefix(';') else {
            if rest.is_empty() {
                break;
            }
            return None;
        };
        rest = after.trim_start();
        if rest.is_empty() {
            // A trailing ';' is tolerated.
            break;
        }
        let end = rest.find(|c: char| !is_token(c)).unwrap_or(rest.len());
        let name = rest[..end].to_ascii_lowercase();
        rest = rest[end..].trim_start();
        rest = rest.strip_prefix('=')?.trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut closed = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        closed = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[closed?..];
            value
        } else {
            let end = rest.find(|c: char| !is_token(c)).unwrap_or(rest.len());
            let value = rest[..end].to_string();
            rest = &rest[end..];
            value
        };
        if name.is_empty() || parameters.iter().any(|(n, _)| *n == name) {
            return None;
        }
        parameters.push((name, value));
    }
    Some(MediaType {
        essence: essence.to_ascii_lowercase(),
        parameters,
    })
}

/// One part of a `multipart/mixed` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub data: Bytes,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a multipart body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("a part is larger than {MAX_PART_BYTES} bytes")]
    PartTooLarge,
    #[error("a part's headers are larger than {MAX_PART_HEADER_BYTES} bytes")]
    HeadersTooLarge,
    #[error("more than {MAX_PARTS} parts")]
    TooManyParts,
    #[error("a part header is malformed")]
    BadHeader,
    #[error("a part's Content-Length is not its length")]
    LengthMismatch,
    #[error("the body ended before the closing boundary")]
    Truncated,
    #[error("the boundary line is malformed")]
    BadBoundaryLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` (the end) or padding then CRLF.
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// A `multipart/mixed` reader fed chunk by chunk.
#[derive(Debug)]
pub struct MultipartReader {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    state: State,
    /// Bytes not yet consumed: at most a delimiter's length (plus a header
    /// block while headers are read).
    carry: BytesMut,
    headers: Vec<(String, String)>,
    data: BytesMut,
    parts: Vec<Part>,
    max_part: usize,
}

impl MultipartReader {
    pub fn new(boundary: &str) -> Self {
        Self::with_part_limit(boundary, MAX_PART_BYTES)
    }

    pub fn with_part_limit(boundary: &str, max_part: usize) -> Self {
        let mut carry = BytesMut::new();
        // The first delimiter may open the body without a CRLF before it.
        carry.extend_from_slice(b"\r\n");
        Self {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            state: State::Preamble,
            carry,
            headers: Vec::new(),
            data: BytesMut::new(),
            parts: Vec::new(),
            max_part,
        }
    }

    /// Feeds the next chunk of the body.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), MultipartError> {
        if self.state == State::Done {
            return Ok(()); // the epilogue is ignored
        }
        self.carry.extend_from_slice(chunk);
        loop {
            let progressed = match self.state {
                State::Preamble => self.skip_to_delimiter(),
                State::AfterDelimiter => self.after_delimiter()?,
                State::Headers => self.read_headers()?,
                State::Body => self.read_body()?,
                State::Done => {
                    self.carry.clear();
                    return Ok(());
                }
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    /// The body has ended: the parts, or why the body is not whole.
    pub fn finish(self) -> Result<Vec<Part>, MultipartError> {
        if self.state != State::Done {
            return Err(MultipartError::Truncated);
        }
        Ok(self.parts)
    }

    /// Parts completed so far.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    fn find_delimiter(&self) -> Option<usize> {
        // SIMD substring search: a byte-by-byte window scan was the largest
        // CPU cost of relaying results (docs/BENCHMARKS.md).
        memchr::memmem::find(&self.carry, &self.delimiter)
    }

    fn skip_to_delimiter(&mut self) -> bool {
        match self.find_delimiter() {
            Some(at) => {
                let _ = self.carry.split_to(at + self.delimiter.len());
                self.state = State::AfterDelimiter;
                true
            }
            None => {
                // Keep only what could still begin a delimiter.
                let keep = self.delimiter.len() - 1;
                if self.carry.len() > keep {
                    let _ = self.carry.split_to(self.carry.len() - keep);
                }
                false
            }
        }
    }

    fn after_delimiter(&mut self) -> Result<bool, MultipartError> {
        if self.carry.len() < 2 {
            return Ok(false);
        }
        if self.carry.starts_with(b"--") {
            self.state = State::Done;
            self.carry.clear();
            return Ok(true);
        }
        // Transport padding (spaces and tabs), then CRLF.
        let Some(line_end) = memchr::memmem::find(&self.carry, b"\r\n") else {
            if self.carry.len() > 1024 {
                return Err(MultipartError::BadBoundaryLine);
            }
            return Ok(false);
        };
        if !self.carry[..line_end]
            .iter()
            .all(|b| *b == b' ' || *b == b'\t')
        {
            return Err(MultipartError::BadBoundaryLine);
        }
        let _ = self.carry.split_to(line_end + 2);
        if self.parts.len() >= MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        self.state = State::Headers;
        Ok(true)
    }

    fn read_headers(&mut self) -> Result<bool, MultipartError> {
        // An empty header block is a lone CRLF.
        if self.carry.starts_with(b"\r\n") {
            let _ = self.carry.split_to(2);
            self.headers.clear();
            self.state = State::Body;
            return Ok(true);
        }
        let Some(end) = memchr::memmem::find(&self.carry, b"\r\n\r\n") else {
            if self.carry.len() > MAX_PART_HEADER_BYTES {
                return Err(MultipartError::HeadersTooLarge);
            }
            return Ok(false);
        };
        if end > MAX_PART_HEADER_BYTES {
            return Err(MultipartError::HeadersTooLarge);
        }
        let block = self.carry.split_to(end + 4);
        let text = std::str::from_utf8(&block[..end]).map_err(|_| MultipartError::BadHeader)?;
        let mut headers = Vec::new();
        for line in text.split("\r\n") {
            let (name, value) = line.split_once(':').ok_or(MultipartError::BadHeader)?;
            let name = name.trim();
            if name.is_empty() || !name.chars().all(is_token) {
                return Err(MultipartError::BadHeader);
            }
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        self.headers = headers;
        self.state = State::Body;
        Ok(true)
    }

    fn read_body(&mut self) -> Result<bool, MultipartError> {
        match self.find_delimiter() {
            Some(at) => {
                self.take_data(at)?;
                let _ = self.carry.split_to(self.delimiter.len());
                self.finish_part()?;
                self.state = State::AfterDelimiter;
                Ok(true)
            }
            None => {
                let keep = self.delimiter.len() - 1;
                if self.carry.len() > keep {
                    self.take_data(self.carry.len() - keep)?;
                }
                Ok(false)
            }
        }
    }

    fn take_data(&mut self, len: usize) -> Result<(), MultipartError> {
        if self.data.len() + len > self.max_part {
            return Err(MultipartError::PartTooLarge);
        }
        let data = self.carry.split_to(len);
        if self.data.is_empty() {
            self.data = data;
        } else {
            self.data.extend_from_slice(&data);
        }
        Ok(())
    }

    fn finish_part(&mut self) -> Result<(), MultipartError> {
        let data = std::mem::take(&mut self.data).freeze();
        let headers = std::mem::take(&mut self.headers);
        if let Some(length) = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v)
            && length.parse::<usize>().ok() != Some(data.len())
        {
            return Err(MultipartError::LengthMismatch);
        }
        self.parts.push(Part { headers, data });
        Ok(())
    }
}

/// Parses a whole body at once.
pub fn parse_multipart(boundary: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let mut reader = MultipartReader::new(boundary);
    reader.push(body)?;
    reader.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        authorization: &'a str,
        credentials: &'a str,
        content_type: &'a str,
        task_id: &'a str,
        pixels: &'a str,
    ) -> ResultHeaders<'a> {
        let some = |s: &'a str| (!s.is_empty()).then_some(s);
        ResultHeaders {
            authorization: some(authorization),
            credentials: some(credentials),
            content_type: some(content_type),
            task_id: some(task_id),
            pixels: some(pixels),
        }
    }

    const A: &str = TRANSCODER_AUTHORIZATION;

    #[test]
    fn the_checks_run_in_go_livepeers_order_with_its_statuses() {
        let check = |h| check_result_headers(&h, "s3cret");
        let bad = |h| check(h).unwrap_err();
        // Every field wrong: the first check decides.
        assert_eq!(bad(headers("x", "y", "", "z", "w")).status(), 401);
        assert_eq!(
            bad(headers(A, "wrong", "", "z", "w")),
            ResultRejection::BadCredentials
        );
        assert_eq!(
            bad(headers(A, "s3cret", "not a type", "z", "w")).status(),
            415
        );
        assert_eq!(
            bad(headers(
                A,
                "s3cret",
                "multipart/mixed; boundary=b",
                "z",
                "w"
            )),
            ResultRejection::BadTaskId
        );
        assert_eq!(
            bad(headers(
                A,
                "s3cret",
                "multipart/mixed; boundary=b",
                "7",
                "w"
            )),
            ResultRejection::BadPixels
        );
        assert_eq!(ResultRejection::BadTaskId.to_string(), "Invalid Task ID");
        assert_eq!(ResultRejection::BadPixels.to_string(), "Invalid Pixels");
        // The error type needs no Pixels.
        assert_eq!(
            check(headers(A, "s3cret", TRANSCODING_ERROR, "7", "")),
            Ok(ResultBody::Error { task_id: 7 })
        );
        assert_eq!(
            check(headers(
                A,
                "s3cret",
                "multipart/mixed; boundary=\"x y\"",
                "-3",
                "+12"
            )),
            Ok(ResultBody::Renditions {
                task_id: -3,
                pixels: 12,
                boundary: "x y".into()
            })
        );
        assert_eq!(
            check(headers(A, "s3cret", "video/mp2t", "1", "0")),
            Ok(ResultBody::Ignored {
                task_id: 1,
                media_type: "video/mp2t".into()
            })
        );
        // multipart without a boundary cannot be read.
        assert_eq!(
            bad(headers(A, "s3cret", "multipart/mixed", "1", "0")).status(),
            415
        );
    }

    #[test]
    fn integers_are_go_style() {
        for (text, value) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("+5", Some(5)),
            ("12", Some(12)),
        ] {
            assert_eq!(parse_integer(Some(text)), value, "{text}");
        }
        for bad in ["", " 1", "1 ", "0x1", "1.0", "+", "99999999999999999999"] {
            assert_eq!(parse_integer(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(parse_integer(None), None);
    }

    #[test]
    fn media_types_parse_like_go() {
        let m = parse_media_type("Multipart/Mixed; Boundary=abc; charset=\"a\\\"b\";").unwrap();
        assert_eq!(m.essence, "multipart/mixed");
        assert_eq!(m.parameter("boundary"), Some("abc"));
        assert_eq!(m.parameter("charset"), Some("a\"b"));
        for bad in [
            "",
            "text",
            "/x",
            "a/",
            "a/b; =x",
            "a/b; x",
            "a/b; x=1; x=2",
            "a/b; x=\"open",
            "a b/c",
        ] {
            assert!(parse_media_type(bad).is_none(), "{bad:?}");
        }
    }

    fn body(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = b"preamble to ignore".to_vec();
        for (headers, data) in parts {
            out.extend_from_slice(format!("\r\n--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(format!("\r\n--{boundary}--\r\nepilogue").as_bytes());
        out
    }

    #[test]
    fn parts_come_out_whole_however_the_body_is_cut() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let whole = body(
            "BOUND",
            &[
                (
                    "Content-Type: video/mp2t\r\nContent-Length: 5000\r\nPixels: 99",
                    &data,
                ),
                (
                    "Content-Type: video/mp4\r\nPixels: 1",
                    b"short\r\n--BOUN not a delimiter",
                ),
            ],
        );
        let expected = parse_multipart("BOUND", &whole).unwrap();
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[0].data.as_ref(), data.as_slice());
        assert_eq!(expected[0].header("pixels"), Some("99"));
        assert_eq!(
            expected[1].data.as_ref(),
            b"short\r\n--BOUN not a delimiter"
        );
        for size in [1, 2, 3, 7, 64, 4999] {
            let mut reader = MultipartReader::new("BOUND");
            for chunk in whole.chunks(size) {
                reader.push(chunk).unwrap();
            }
            assert_eq!(reader.finish().unwrap(), expected, "chunks of {size}");
        }
    }

    #[test]
    fn a_body_that_starts_with_its_boundary_and_parts_without_headers_parse() {
        let parts = parse_multipart(
            "b",
            b"--b\r\n\r\nno headers\r\n--b\r\nX: 1\r\n\r\n\r\n--b--",
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].headers.is_empty());
        assert_eq!(parts[0].data.as_ref(), b"no headers");
        assert_eq!(parts[1].data.as_ref(), b"");
    }

    #[test]
    fn broken_bodies_are_typed_errors() {
        assert_eq!(
            parse_multipart("b", b"--b\r\nX: 1\r\n\r\ndata"),
            Err(MultipartError::Truncated)
        );
        assert_eq!(
            parse_multipart("b", b"--b\r\nContent-Length: 9\r\n\r\ndata\r\n--b--"),
            Err(MultipartError::LengthMismatch)
        );
        assert_eq!(
            parse_multipart("b", b"--b\r\nno colon\r\n\r\nx\r\n--b--"),
            Err(MultipartError::BadHeader)
        );
        assert_eq!(
            parse_multipart("b", b"--bjunk\r\n\r\nx\r\n--b--"),
            Err(MultipartError::BadBoundaryLine)
        );
        let mut reader = MultipartReader::with_part_limit("b", 10);
        assert_eq!(
            reader.push(b"--b\r\n\r\n0123456789abcdef"),
            Err(MultipartError::PartTooLarge)
        );
        let many: Vec<u8> = (0..=MAX_PARTS)
            .flat_map(|_| b"--b\r\n\r\nx\r\n".to_vec())
            .collect();
        assert_eq!(
            parse_multipart("b", &many),
            Err(MultipartError::TooManyParts)
        );
        let huge_headers = format!(
            "--b\r\nX: {}\r\n\r\nx\r\n--b--",
            "y".repeat(MAX_PART_HEADER_BYTES)
        );
        assert_eq!(
            parse_multipart("b", huge_headers.as_bytes()),
            Err(MultipartError::HeadersTooLarge)
        );
        assert_eq!(
            parse_multipart("b", b"nothing at all"),
            Err(MultipartError::Truncated)
        );
    }
}
