// Copyright ⓒ 2024-2026 Peter Morgan <peter.james.morgan@gmail.com>
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use std::sync::atomic::{AtomicI32, Ordering};

use nisshi_sans_io::{
    ApiKey, ErrorCode, MetadataRequest, MetadataResponse, RequestInput,
    create_topics_request::CreatableTopic, topic::is_valid_topic_name,
};
use rama::Service;
use tracing::{debug, error, instrument};

use crate::{Error, Result, Storage, TopicId, authorized_operations};

/// A [`Service`] using its [`Storage`] taking [`MetadataRequest`] returning [`MetadataResponse`].
/// ```no_run
/// use rama::Service;
/// use nisshi_sans_io::MetadataRequest;
/// use nisshi_storage::{Error, MetadataService, StorageContainer};
/// use url::Url;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Error> {
/// const HOST: &str = "localhost";
/// const PORT: i32 = 9092;
/// const NODE_ID: i32 = 111;
///
/// let storage = StorageContainer::builder()
///     .cluster_id("nisshi")
///     .node_id(NODE_ID)
///     .advertised_listener(Url::parse(&format!("tcp://{HOST}:{PORT}"))?)
///     .storage(Url::parse("memory://nisshi/")?)
///     .build()
///     .await?;
///
/// let service = MetadataService { storage };
///
/// let response = service
///     .serve(
///         MetadataRequest::default()
///             .allow_auto_topic_creation(Some(false))
///             .include_cluster_authorized_operations(Some(false))
///             .include_topic_authorized_operations(Some(false))
///             .topics(Some([].into())),
///     )
///     .await?;
///
/// let brokers = response.brokers.as_deref().unwrap_or_default();
/// assert_eq!(1, brokers.len());
/// assert_eq!(HOST, brokers[0].host);
/// assert_eq!(PORT, brokers[0].port);
/// assert_eq!(NODE_ID, brokers[0].node_id);
/// assert!(brokers[0].rack.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MetadataService<G> {
    pub storage: G,
}

/// Defaults for topics created via auto creation: four partitions is the
/// `num.partitions` that the Apache Kafka client test suites assume.
/// Patched for sluice: the partitions of a topic created on first use, Kafka's
/// `num.partitions`. Upstream fixes it at 4; an embedding broker sets its own once at start.
static AUTO_CREATE_NUM_PARTITIONS: AtomicI32 = AtomicI32::new(4);

/// Sets the number of partitions of topics created because a client named them.
pub fn set_auto_create_num_partitions(partitions: i32) {
    AUTO_CREATE_NUM_PARTITIONS.store(partitions.max(1), Ordering::Relaxed);
}

const AUTO_CREATE_REPLICATION_FACTOR: i16 = 1;

impl<G> ApiKey for MetadataService<G> {
    const KEY: i16 = MetadataRequest::KEY;
}

impl<G, I> Service<I> for MetadataService<G>
where
    G: Storage,
    I: Into<RequestInput<MetadataRequest>> + Send + 'static,
{
    type Output = MetadataResponse;
    type Error = Error;

    #[instrument(skip(self, input))]
    async fn serve(&self, input: I) -> Result<Self::Output, Self::Error> {
        let input = input.into();

        let topics = input
            .request
            .topics
            .map(|topics| topics.iter().map(TopicId::from).collect::<Vec<_>>());

        let mut response = self
            .storage
            .metadata(topics.as_deref())
            .await
            .inspect_err(|err| error!(?err))?;

        // versions prior to 4 do not have allow_auto_topic_creation,
        // and behave as if it were true
        if input.request.allow_auto_topic_creation.unwrap_or(true) {
            let unknown = response
                .topics()
                .iter()
                .filter(|topic| topic.error_code == i16::from(ErrorCode::UnknownTopicOrPartition))
                .filter_map(|topic| topic.name.clone())
                .filter(|name| is_valid_topic_name(name))
                .collect::<Vec<_>>();

            let mut created = false;

            for name in unknown {
                match self
                    .storage
                    .create_topic(
                        CreatableTopic::default()
                            .name(name)
                            .num_partitions(AUTO_CREATE_NUM_PARTITIONS.load(Ordering::Relaxed))
                            .replication_factor(AUTO_CREATE_REPLICATION_FACTOR)
                            .assignments(Some([].into()))
                            .configs(Some([].into())),
                        false,
                    )
                    .await
                {
                    Ok(topic_id) => {
                        debug!(?topic_id);
                        created = true;
                    }

                    // concurrent metadata requests can race to create
                    Err(Error::Api(ErrorCode::TopicAlreadyExists)) => created = true,

                    Err(err) => error!(?err),
                }
            }

            if created {
                response = self
                    .storage
                    .metadata(topics.as_deref())
                    .await
                    .inspect_err(|err| error!(?err))?;
            }
        }
        // Patched for sluice: as Kafka without an authorizer, the operations asked for are
        // every operation of the resource type, and i32::MIN stands for "not asked for".
        // Upstream answered -1, every bit set, for the cluster whether or not it was asked
        // for, and kafka-python's describe_topics, which asks for both, failed on the bits
        // that are not operations.
        let topic_authorized_operations = authorized_operations::requested(
            input
                .request
                .include_topic_authorized_operations
                .unwrap_or(false),
            authorized_operations::TOPIC,
        );

        let brokers = Some(response.brokers().to_owned());
        let cluster_id = response.cluster().map(|s| s.into());
        let controller_id = response.controller();
        let topics = Some(
            response
                .topics()
                .iter()
                .map(|topic| {
                    if topic.error_code == i16::from(ErrorCode::UnknownTopicOrPartition)
                        && topic
                            .name
                            .as_deref()
                            .is_some_and(|name| !is_valid_topic_name(name))
                    {
                        topic
                            .clone()
                            .error_code(ErrorCode::InvalidTopicException.into())
                    } else {
                        topic.clone()
                    }
                })
                .map(|topic| topic.topic_authorized_operations(Some(topic_authorized_operations)))
                .collect::<Vec<_>>(),
        );
        let cluster_authorized_operations = Some(authorized_operations::requested(
            input
                .request
                .include_cluster_authorized_operations
                .unwrap_or(false),
            authorized_operations::CLUSTER,
        ));

        let throttle_time_ms = Some(0);

        Ok(MetadataResponse::default()
            .throttle_time_ms(throttle_time_ms)
            .brokers(brokers)
            .cluster_id(cluster_id)
            .controller_id(controller_id)
            .topics(topics)
            .cluster_authorized_operations(cluster_authorized_operations))
    }
}
