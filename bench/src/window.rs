//! [`Window`]: up to N confirmations outstanding, settled oldest first (`--window`): the one
//! pipelining loop of the comms rows and the raw-lapin and raw-rdkafka references.

use std::collections::VecDeque;
use std::future::Future;

/// Pending confirmations, at most `limit`; pushing one more awaits the oldest.
#[derive(Debug)]
pub struct Window<F> {
    limit: usize,
    pending: VecDeque<F>,
}

impl<F: Future<Output = anyhow::Result<()>>> Window<F> {
    /// A window of `limit` (at least 1) confirmations.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            pending: VecDeque::with_capacity(limit),
        }
    }

    /// Keep `confirmation`; when the window is full, await the oldest first.
    pub async fn push(&mut self, confirmation: F) -> anyhow::Result<()> {
        self.pending.push_back(confirmation);
        if self.pending.len() >= self.limit {
            if let Some(oldest) = self.pending.pop_front() {
                oldest.await?;
            }
        }
        Ok(())
    }

    /// Await every confirmation still outstanding, in order.
    pub async fn drain(self) -> anyhow::Result<()> {
        for confirmation in self.pending {
            confirmation.await?;
        }
        Ok(())
    }
}
