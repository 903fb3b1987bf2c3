//! The broadcast delay of the live voice: Realtime audio is held for a few seconds before it
//! airs, and in that time the words it carries are moderated. A response whose transcript
//! fails moderation, or that an operator dumps, is cut: what is still held never airs.
//!
//! ```text
//!  audio delta ──hold──> [ held: (arrived, pcm) ... ] ──release──> feed ──> air
//!  transcript  ──moderate──> cleared_through ─┘  (a chunk airs once it is `delay` old
//!                                                 and words received after it passed)
//! ```
//!
//! - A chunk is released when it has been held for the delay *and* the transcript received
//!   up to its arrival (or the whole response's) has passed moderation. The transcript
//!   trails the audio by a fraction of a second, so with a delay of seconds words are judged
//!   before their audio is due; when they are late, the audio waits for them.
//! - A cut drops everything held and refuses what arrives after it; what was released before
//!   had passed.
//! - Released audio goes to the feed as it comes due: the delay adds its length to the
//!   latency from a Realtime delta to air, and nothing else.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::voice::Cue;
use crate::voice::screen::Screen;

/// The default broadcast delay: long enough to moderate a sentence and for an operator to
/// react, short enough to keep a conversation live.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(4);

/// The operator's dump button: cuts whatever the live voice holds in its broadcast delay.
#[derive(Debug)]
pub struct Dump {
    presses: watch::Sender<u64>,
}

impl Default for Dump {
    fn default() -> Self {
        Dump {
            presses: watch::Sender::new(0),
        }
    }
}

impl Dump {
    /// Cuts what is in the delay now. Returns whether a response was in it (a turn of the
    /// live voice was running).
    pub fn press(&self) -> bool {
        self.presses.send_modify(|n| *n += 1);
        self.presses.receiver_count() > 0
    }

    /// For one turn: it sees the presses made while it runs.
    pub(super) fn watch(&self) -> watch::Receiver<u64> {
        self.presses.subscribe()
    }
}

/// What a response passes on its way to air: the delay, the moderation of its words, and the
/// operator's dump button.
pub(super) struct Gate<'a> {
    pub(super) delay: Duration,
    pub(super) screen: &'a Screen,
    pub(super) cue: &'a Cue,
    pub(super) dump: watch::Receiver<u64>,
}

impl Gate<'_> {
    /// `Err(why)` when `words` may not air.
    pub(super) async fn judge(&self, words: &str) -> Result<(), String> {
        self.screen.verdict(self.cue, words).await
    }
}

#[derive(Debug)]
pub(super) struct Delay {
    delay: Duration,
    held: VecDeque<(Instant, Vec<i16>)>,
    /// Transcript received up to this moment has passed moderation.
    cleared_through: Option<Instant>,
    /// The whole response's transcript passed.
    all_cleared: bool,
    cut: bool,
    /// Samples released to the feed, and held when a cut dropped them.
    pub(super) released: usize,
    pub(super) dropped: usize,
    /// When the first chunk arrived and when it was released (for the latency figure).
    pub(super) first_arrival: Option<Instant>,
    pub(super) first_release: Option<Instant>,
}

impl Delay {
    pub(super) fn new(delay: Duration) -> Self {
        Delay {
            delay,
            held: VecDeque::new(),
            cleared_through: None,
            all_cleared: false,
            cut: false,
            released: 0,
            dropped: 0,
            first_arrival: None,
            first_release: None,
        }
    }

    /// Holds audio that arrived `at`; nothing after a cut.
    pub(super) fn hold(&mut self, at: Instant, samples: Vec<i16>) {
        if self.cut {
            self.dropped += samples.len();
            return;
        }
        self.first_arrival.get_or_insert(at);
        self.held.push_back((at, samples));
    }

    /// The transcript received up to `at` passed moderation.
    pub(super) fn clear_through(&mut self, at: Instant) {
        self.cleared_through = Some(self.cleared_through.map_or(at, |c| c.max(at)));
    }

    /// The whole transcript passed.
    pub(super) fn clear_all(&mut self) {
        self.all_cleared = true;
    }

    /// Drops everything held, and whatever arrives later. Returns the samples dropped.
    pub(super) fn cut(&mut self) -> usize {
        self.cut = true;
        let dropped: usize = self.held.drain(..).map(|(_, s)| s.len()).sum();
        self.dropped += dropped;
        dropped
    }

    pub(super) fn is_cut(&self) -> bool {
        self.cut
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn cleared(&self, arrived: Instant) -> bool {
        self.all_cleared || self.cleared_through.is_some_and(|c| c >= arrived)
    }

    /// When the next held chunk is due, if the words with it have passed; `None` when there
    /// is nothing to release until more is moderated.
    pub(super) fn next_due(&self) -> Option<Instant> {
        let &(arrived, _) = self.held.front()?;
        self.cleared(arrived).then(|| arrived + self.delay)
    }

    /// The chunks due at `now`, in order, to go to the feed.
    pub(super) fn release(&mut self, now: Instant) -> Vec<Vec<i16>> {
        let mut out = Vec::new();
        while let Some(&(arrived, _)) = self.held.front() {
            if arrived + self.delay > now || !self.cleared(arrived) {
                break;
            }
            let (_, samples) = self.held.pop_front().expect("front exists");
            self.released += samples.len();
            self.first_release.get_or_insert(now);
            out.push(samples);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(4);

    #[test]
    fn audio_airs_only_once_it_is_delay_old_and_its_words_have_passed() {
        let t0 = Instant::now();
        let mut d = Delay::new(D);
        d.hold(t0, vec![1; 10]);
        d.hold(t0 + Duration::from_secs(1), vec![2; 10]);
        assert_eq!(d.next_due(), None, "no words judged yet");
        assert!(d.release(t0 + D * 2).is_empty());
        d.clear_through(t0 + Duration::from_millis(500));
        assert_eq!(d.next_due(), Some(t0 + D));
        assert!(d.release(t0 + D - Duration::from_millis(1)).is_empty());
        assert_eq!(d.release(t0 + D), vec![vec![1; 10]]);
        assert!(
            d.release(t0 + D * 2).is_empty(),
            "the second chunk's words are not judged yet"
        );
        d.clear_all();
        assert_eq!(d.release(t0 + D * 2), vec![vec![2; 10]]);
        assert_eq!((d.released, d.dropped), (20, 0));
    }

    #[test]
    fn a_cut_drops_what_is_held_and_what_comes_after() {
        let t0 = Instant::now();
        let mut d = Delay::new(D);
        d.hold(t0, vec![1; 10]);
        d.clear_all();
        assert_eq!(d.release(t0 + D).len(), 1);
        d.hold(t0 + D, vec![2; 7]);
        assert_eq!(d.cut(), 7);
        d.hold(t0 + D, vec![3; 5]);
        assert!(d.is_empty() && d.is_cut());
        assert!(d.release(t0 + D * 3).is_empty());
        assert_eq!((d.released, d.dropped), (10, 12));
    }
}
