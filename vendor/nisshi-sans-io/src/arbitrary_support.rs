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

//! `#[arbitrary(with = ...)]` helpers for generated fields whose Kafka kind
//! maps to a foreign type with no `arbitrary::Arbitrary` impl of its own
//! (`bytes::Bytes`, from the `bytes` crate). The orphan rule blocks a direct
//! `impl Arbitrary for Bytes` here, so `build.rs` instead points those fields
//! at these functions.

use arbitrary::{Arbitrary as _, Unstructured};
use bytes::Bytes;

pub(crate) fn bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Bytes> {
    <Vec<u8>>::arbitrary(u).map(Bytes::from)
}
