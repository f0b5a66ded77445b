//! client/retry.rs runs one REST call on a slot's channel (`POST` or `PUT` of its topics)
//! again until it works, fails for good or the call's deadline passes; it never changes a
//! slot's topic set.

use super::Client;
use crate::backoff::Retry;
use crate::channel::{SetupFailure, Slot};
use crate::error::ApiError;
use crate::error::Error;
use crate::event::Lifecycle;
use crate::topic::Topic;
use crate::topic::TopicResult;
use std::time::{Duration, Instant};

impl Client {
    /// Adds `add` (reserved in `slot`'s set) to `slot`'s channel with `POST`, retrying
    /// transient failures until `deadline`; a channel found gone is replaced by its thread
    /// (which subscribes the whole set) and the `POST` is sent again for these topics' answers.
    pub(super) fn post_with_retry(
        &self,
        slot: &Slot,
        add: &[Topic],
        deadline: Instant,
        budget: Duration,
    ) -> Result<Vec<TopicResult>, Error> {
        let shared = &self.inner.shared;
        let mut retry = Retry::new(shared.config.backoff.clone());
        loop {
            let generation = slot.setup_generation();
            let error = match slot.post_topics(shared, add) {
                Ok(results) => return Ok(results),
                Err(error) => error,
            };
            if matches!(error, ApiError::NotFound) {
                slot.nudge();
                match slot.wait_setup(generation, deadline) {
                    Some(Ok(_)) => continue,
                    Some(Err(failure)) => return Err(setup_error(failure)),
                    None => {
                        return Err(Error::Timeout {
                            operation: "subscribe",
                            after: budget,
                            last_failure: slot.last_failure(),
                        })
                    }
                }
            }
            self.retry_wait(slot, &mut retry, error, deadline)?;
        }
    }

    /// After a failed call on `slot`: waits the backoff delay when the error is transient and
    /// the wait ends before `deadline`, else returns the error.
    fn retry_wait(
        &self,
        slot: &Slot,
        retry: &mut Retry,
        error: ApiError,
        deadline: Instant,
    ) -> Result<(), ApiError> {
        if !error.is_transient() {
            return Err(error);
        }
        let Some(delay) = retry.next_delay(error.retry_after()) else {
            return Err(error);
        };
        if Instant::now() + delay > deadline {
            return Err(error);
        }
        self.inner
            .shared
            .dispatcher
            .lifecycle
            .emit(Lifecycle::RequestFailed {
                channel: slot.channel_id(),
                operation: "subscribe",
                error: error.clone(),
                count: 1,
            });
        // A shutdown wakes this wait; nothing is sent after it.
        if slot.sleep_caller(delay, error.retry_after().unwrap_or_default()) {
            return Err(error);
        }
        Ok(())
    }

    pub(super) fn apply_with_retry(
        &self,
        slot: &Slot,
        deadline: Instant,
    ) -> Result<Vec<TopicResult>, ApiError> {
        let mut retry = Retry::new(self.inner.shared.config.backoff.clone());
        loop {
            match slot.apply_topics(&self.inner.shared) {
                Ok(results) => return Ok(results),
                Err(error) => self.retry_wait(slot, &mut retry, error, deadline)?,
            }
        }
    }
}

pub(super) fn setup_error(failure: SetupFailure) -> Error {
    match failure {
        SetupFailure::Api(error) => error.into(),
        SetupFailure::Stopped(reason) => Error::ChannelStopped { reason },
    }
}
