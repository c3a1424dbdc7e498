//! Mapping librdkafka errors into [`comms_core::Error`].

use comms_core::Error;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Backend name in errors.
pub const BACKEND: &str = "kafka";

/// Whether an rdkafka error may go away if the same call is made again later.
pub fn is_retryable(e: &KafkaError) -> bool {
    !matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
                | RDKafkaErrorCode::InvalidConfig
                | RDKafkaErrorCode::InvalidArgument
                | RDKafkaErrorCode::UnsupportedVersion
        )
    ) && !matches!(
        e,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
    )
}

/// `what` failed with `e`.
pub fn map(what: impl Into<String>, e: KafkaError) -> Error {
    let retryable = is_retryable(&e);
    Error::transport(BACKEND, what, retryable, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let t = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(map("send", t).is_retryable());
        let big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(!map("send", big).is_retryable());
    }
}
