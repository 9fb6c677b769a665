//! What the fuzz targets share: the broker's request dispatch over a storage engine, fed
//! one request frame at a time, as a connection's bytes are after framing.

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};
use nisshi_broker::{
    Error,
    coordinator::group::administrator::{Controller, GroupCoordinatorConfig},
    service,
};
use nisshi_sans_io::BytesInput;
use nisshi_service::{BytesFrameLayer, BytesFrameService, FrameRouteService};
use nisshi_storage::{ArcDynStorage, StorageContainer};
use rama::{Layer as _, Service as _};
use tokio::runtime::Runtime;
use url::Url;

/// The broker's request dispatch: frame decoding, then every API's service, as a broker
/// connection runs them.
pub struct Broker {
    runtime: Runtime,
    service: BytesFrameService<FrameRouteService<Error>>,
}

impl Broker {
    /// A broker on `storage` (a storage URL such as `memory://fuzz/`), built once per
    /// process.
    pub fn get(cell: &'static OnceLock<Broker>, storage: &str) -> &'static Broker {
        cell.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the fuzzed broker");
            let storage = Url::parse(storage).expect("a storage URL");
            let service = runtime.block_on(async {
                let mut builder = StorageContainer::builder();
                builder.with_factory(Arc::new(nisshi_storage_dynostore::MemoryEngineFactory));
                builder.with_factory(Arc::new(nisshi_storage_sql::LiteEngineFactory));
                let storage = builder
                    .cluster_id("fuzz")
                    .node_id(1)
                    .advertised_listener(Url::parse("tcp://127.0.0.1:9092").unwrap())
                    .schema_registry(None)
                    .lake_house(None)
                    .storage(storage)
                    .cancellation(Default::default())
                    .silent(true)
                    .build()
                    .await
                    .map(|storage| Arc::new(storage) as ArcDynStorage)
                    .expect("the storage builds");
                let groups = Controller::new(storage.clone(), GroupCoordinatorConfig::default());
                let route = service::storage::services(
                    FrameRouteService::<Error>::builder(),
                    storage,
                )
                .and_then(|builder| service::coordinator::services(builder, groups))
                .and_then(service::auth::services)
                .and_then(|builder| builder.build().map_err(Into::into))
                .expect("the routes build");
                BytesFrameLayer::default().into_layer(route)
            });
            Broker { runtime, service }
        })
    }

    /// Dispatches `body` as one request frame (the size prefix is added), with a bound on
    /// how long a request may take, since some wait for records or group members (a fetch
    /// for its max wait, a JoinGroup for the rebalance delay): a wait says nothing about
    /// decoding and dispatch, and cutting it keeps the executions per second up.
    pub fn request(&self, body: &[u8]) {
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).unwrap_or(i32::MAX));
        frame.put_slice(body);
        let frame = frame.freeze();
        self.runtime.block_on(async {
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(25),
                self.service.serve(BytesInput::from(Bytes::clone(&frame))),
            )
            .await;
        });
    }
}
