//! The request versions the load generator sends, chosen per broker from its ApiVersions
//! answer: for every API the highest version both sides speak, up to the one the bench
//! prefers (non-flexible versions that Kafka 4.x still serves), and never below the oldest one
//! the bench's requests can be encoded in (a field it sets must exist in that version).
//!
//! Negotiating instead of fixing versions lets `corelog bench` drive brokers whose ranges are
//! narrower than Kafka's (tansu, older Kafka), and fail with a message naming the API when
//! there is no common version, instead of with a decode error mid-run.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// The versions of one run, one per API the bench uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub metadata: i16,
    pub create_topics: i16,
    pub list_offsets: i16,
}

/// For every API: the oldest version the bench can use, and the one it prefers.
/// Produce v3 is the first with record batches (magic 2); Fetch v4 the first with an isolation
/// level and v2 batches; Metadata v4 the first with `allow_auto_topic_creation`; CreateTopics
/// v2 and ListOffsets v1 the first whose answers carry what the bench reads.
const RANGES: [(ApiKey, i16, i16); 5] = [
    (ApiKey::Produce, 3, 7),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::Metadata, 4, 9),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::ListOffsets, 1, 5),
];

impl Versions {
    /// What the bench sends to a broker that serves every preferred version.
    pub const PREFERRED: Versions = Versions {
        produce: RANGES[0].2,
        fetch: RANGES[1].2,
        metadata: RANGES[2].2,
        create_topics: RANGES[3].2,
        list_offsets: RANGES[4].2,
    };

    /// The versions to use with a broker that answered ApiVersions with `response`.
    pub fn negotiate(response: &ApiVersionsResponse) -> Result<Versions, String> {
        if response.error_code != 0 {
            return Err(format!(
                "ApiVersions answered Kafka error code {}",
                response.error_code
            ));
        }
        Versions::from_served(|key| {
            let api = response.api_keys.iter().find(|api| api.api_key == key)?;
            Some((api.min_version, api.max_version))
        })
    }

    /// The versions to use with a broker that serves, per API key, the inclusive range
    /// `served(key)` (`None` for an API it does not serve).
    pub fn from_served(served: impl Fn(i16) -> Option<(i16, i16)>) -> Result<Versions, String> {
        let mut chosen = [0i16; RANGES.len()];
        for (slot, &(key, oldest, preferred)) in chosen.iter_mut().zip(RANGES.iter()) {
            let (served_min, served_max) =
                served(key as i16).ok_or_else(|| format!("the broker does not serve {key:?}"))?;
            let version = preferred.min(served_max);
            if version < oldest.max(served_min) {
                return Err(format!(
                    "the broker serves {key:?} versions {served_min}..={served_max}, the bench \
                     needs one in {oldest}..={preferred}"
                ));
            }
            *slot = version;
        }
        Ok(Versions {
            produce: chosen[0],
            fetch: chosen[1],
            metadata: chosen[2],
            create_topics: chosen[3],
            list_offsets: chosen[4],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Versions;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

    fn response(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
        let api_keys = ranges
            .iter()
            .map(|&(key, min, max)| {
                ApiVersion::default()
                    .with_api_key(key as i16)
                    .with_min_version(min)
                    .with_max_version(max)
            })
            .collect();
        ApiVersionsResponse::default().with_api_keys(api_keys)
    }

    /// A broker with wide ranges gets the preferred versions; a narrower one gets its maxima.
    #[test]
    fn picks_the_highest_common_version_up_to_the_preferred_one() {
        let wide = response(&[
            (ApiKey::Produce, 0, 12),
            (ApiKey::Fetch, 0, 17),
            (ApiKey::Metadata, 0, 13),
            (ApiKey::CreateTopics, 0, 7),
            (ApiKey::ListOffsets, 0, 10),
        ]);
        assert_eq!(Versions::negotiate(&wide), Ok(Versions::PREFERRED));
        let narrow = response(&[
            (ApiKey::Produce, 3, 5),
            (ApiKey::Fetch, 4, 8),
            (ApiKey::Metadata, 1, 7),
            (ApiKey::CreateTopics, 2, 3),
            (ApiKey::ListOffsets, 1, 2),
        ]);
        let expected = Versions {
            produce: 5,
            fetch: 8,
            metadata: 7,
            create_topics: 3,
            list_offsets: 2,
        };
        assert_eq!(Versions::negotiate(&narrow), Ok(expected));
    }

    /// No common version, a missing API or an error code is refused with the API named.
    #[test]
    fn refuses_brokers_without_a_common_version() {
        let all = |produce: (i16, i16)| {
            response(&[
                (ApiKey::Produce, produce.0, produce.1),
                (ApiKey::Fetch, 0, 17),
                (ApiKey::Metadata, 0, 13),
                (ApiKey::CreateTopics, 0, 7),
                (ApiKey::ListOffsets, 0, 10),
            ])
        };
        let too_old = Versions::negotiate(&all((0, 2))).unwrap_err();
        assert!(too_old.contains("Produce"), "{too_old}");
        let too_new = Versions::negotiate(&all((8, 12))).unwrap_err();
        assert!(too_new.contains("Produce"), "{too_new}");
        let missing = response(&[(ApiKey::Produce, 0, 12)]);
        assert!(Versions::negotiate(&missing).unwrap_err().contains("Fetch"));
        let failed = all((0, 12)).with_error_code(35);
        assert!(Versions::negotiate(&failed).unwrap_err().contains("35"));
    }
}
