//! When to try the verifier again. A call that failed under the request (the
//! connection reset or closed, a broken pipe, an HTTP/2 GOAWAY or stream reset,
//! a timeout) or that the verifier turned away because it is busy (rate limit,
//! overload) is worth repeating after a pause; a status the verifier chose to
//! answer with (bad request, refused, not found, not enrolled) is an answer and
//! is not. The pauses grow exponentially, within one retry budget (`retries`).

use std::time::Duration;

use tonic::{Code, Status};

/// The first pause between tries.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest pause between tries.
const MAX_DELAY: Duration = Duration::from_secs(10);

/// Why a failed call is worth making again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// The connection failed under the request: the verifier may never have
    /// seen it, or its answer was lost.
    Transport,
    /// The verifier answered that it is overloaded or limiting this node's
    /// rate (UNAVAILABLE, RESOURCE_EXHAUSTED).
    Busy,
}

impl Transient {
    /// Classifies a failed call; `None` for an answer from the verifier that
    /// repeating the call will not change.
    pub fn of(s: &Status) -> Option<Self> {
        if from_transport(s) {
            return Some(Transient::Transport);
        }
        match s.code() {
            Code::Unavailable | Code::ResourceExhausted => Some(Transient::Busy),
            // A deadline that ran out or a call cancelled on the way (by a
            // proxy, or the verifier going down): nothing was decided.
            Code::Cancelled | Code::DeadlineExceeded => Some(Transient::Transport),
            _ => None,
        }
    }
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transient::Transport => "the connection to the verifier failed mid-exchange",
            Transient::Busy => "the verifier is busy",
        })
    }
}

/// Words of the transport errors tonic, hyper, h2 and the OS use, for an error
/// in the chain whose type is not visible here (h2's).
const TRANSPORT_WORDS: &[&str] = &[
    "transport error",
    "connection reset",
    "connection closed",
    "connection refused",
    "connection aborted",
    "broken pipe",
    "stream closed",
    "h2 protocol error",
    "go away",
    "goaway",
    "timed out",
];

/// Whether the status was made on this side from a transport error (it then
/// carries that error as its source). A status the verifier sent arrives in
/// the response's trailers and carries none, whatever its message says.
fn from_transport(s: &Status) -> bool {
    let mut next = std::error::Error::source(s);
    while let Some(e) = next {
        if e.is::<tonic::transport::Error>() || e.is::<hyper::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        let text = e.to_string().to_ascii_lowercase();
        if TRANSPORT_WORDS.iter().any(|w| text.contains(w)) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Exponential backoff over a retry budget: 250 ms, doubling, at most 10 s
/// between tries, `retries` tries after the first.
#[derive(Debug)]
pub struct Backoff {
    retries: u32,
    done: u32,
    delay: Duration,
}

impl Backoff {
    pub fn new(retries: u32) -> Self {
        Self {
            retries,
            done: 0,
            delay: FIRST_DELAY,
        }
    }

    /// The pause before the next try, which it counts; `None` once the
    /// retries are spent.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.done >= self.retries {
            return None;
        }
        self.done += 1;
        let d = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Some(d)
    }

    /// Retries made so far.
    pub fn retries_done(&self) -> u32 {
        self.done
    }

    /// The tries made so far, in words: "1 attempt", "7 attempts".
    pub fn attempts(&self) -> String {
        match self.done + 1 {
            1 => "1 attempt".into(),
            n => format!("{n} attempts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An error standing in for one whose type is private to its crate (h2's).
    #[derive(Debug)]
    struct Opaque(&'static str);

    impl std::fmt::Display for Opaque {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Opaque {}

    /// A status made on this side from `source`, as tonic makes them.
    fn local(
        code: Code,
        msg: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Status {
        let mut s = Status::new(code, msg);
        s.set_source(Arc::new(source));
        s
    }

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "os error")
    }

    #[test]
    fn transport_failures_under_a_request_are_retried() {
        use std::io::ErrorKind;
        for s in [
            local(
                Code::Unknown,
                "transport error",
                io(ErrorKind::ConnectionReset),
            ),
            local(Code::Unknown, "transport error", io(ErrorKind::BrokenPipe)),
            local(
                Code::Internal,
                "h2 protocol error",
                io(ErrorKind::UnexpectedEof),
            ),
            local(
                Code::Unknown,
                "transport error",
                Opaque("connection reset by peer (os error 104)"),
            ),
            local(Code::Unknown, "error", Opaque("broken pipe")),
            local(
                Code::Internal,
                "h2 protocol error: error reading a body from connection",
                Opaque("stream closed because of a broken pipe"),
            ),
            local(
                Code::Internal,
                "h2 protocol error",
                Opaque("connection error received: not a result of an error (GOAWAY)"),
            ),
            local(Code::Unknown, "error", Opaque("transport error")),
            local(
                Code::Unavailable,
                "tcp connect error",
                io(ErrorKind::ConnectionRefused),
            ),
        ] {
            assert_eq!(Transient::of(&s), Some(Transient::Transport), "{s:?}");
        }
    }

    #[test]
    fn timeouts_and_cancellations_are_retried() {
        for code in [Code::Cancelled, Code::DeadlineExceeded] {
            let s = Status::new(code, "timeout expired");
            assert_eq!(Transient::of(&s), Some(Transient::Transport), "{s:?}");
        }
    }

    #[test]
    fn a_busy_verifier_is_retried() {
        for s in [
            Status::resource_exhausted("rate limit: try again in 2 s"),
            Status::unavailable("overloaded"),
        ] {
            assert_eq!(Transient::of(&s), Some(Transient::Busy), "{s:?}");
        }
    }

    #[test]
    fn the_verifier_s_answers_are_not_retried() {
        for s in [
            Status::invalid_argument("bad nonce"),
            Status::permission_denied("EK not trusted"),
            Status::unauthenticated("no client certificate"),
            Status::not_found("node not enrolled"),
            Status::failed_precondition("unknown enrollment"),
            Status::already_exists("node id taken"),
            Status::out_of_range("message too large"),
            // The verifier's own failure: its message may name the transport
            // it failed on, but the verifier answered.
            Status::internal("internal error: store: connection reset"),
            Status::unknown("transport error"),
            // Made on this side, but not from a transport error.
            local(Code::Internal, "decode", Opaque("invalid wire type")),
        ] {
            assert_eq!(Transient::of(&s), None, "{s:?}");
        }
    }

    /// A real transport failure, as tonic reports it: a peer that accepts the
    /// connection and then resets it under the request.
    #[test]
    fn a_connection_reset_under_a_real_request_is_retried() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let s = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt as _;
                let (mut c, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 64];
                let _ = c.read(&mut buf).await;
                // SO_LINGER 0: the close is a reset, not a FIN.
                c.set_zero_linger().unwrap();
                drop(c);
            });
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy();
            let mut c = assay_proto::v1::attestation_client::AttestationClient::new(ch);
            c.challenge(assay_proto::v1::ChallengeRequest {
                node_id: "n".into(),
            })
            .await
            .unwrap_err()
        });
        assert_eq!(Transient::of(&s), Some(Transient::Transport), "{s:?}");
    }

    #[test]
    fn backoff_doubles_to_ten_seconds_within_the_budget() {
        let mut b = Backoff::new(7);
        assert_eq!(b.attempts(), "1 attempt");
        let delays: Vec<u128> = std::iter::from_fn(|| b.next_delay())
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10000]);
        assert_eq!(b.retries_done(), 7);
        assert_eq!(b.attempts(), "8 attempts");
        assert_eq!(b.next_delay(), None);
        assert_eq!(Backoff::new(0).next_delay(), None);
    }
}
