#include "ps/client/model_pull.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"
#include "ps/common/checked_math.h"
#include "ps/common/grpc_status.h"
#include "ps/spec/initializer.h"
#include "ps/spec/placement.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace tessera {
namespace {

// A bounded table is written whole (every row, pulled or initial); beyond
// this many floats (8 GiB) the pull refuses instead of allocating it.
constexpr int64_t kMaxDenseTableFloats = int64_t{1} << 31;

struct Assembly {
  v1::TensorSpec spec;
  std::vector<float> values;
  int64_t filled = 0;
  std::map<uint64_t, std::vector<float>> rows;  // embedding rows by id
  int64_t version = 0;
};

}  // namespace

absl::StatusOr<std::vector<PulledTensor>> PullModel(
    const std::vector<std::string>& shards, absl::Duration timeout) {
  std::map<std::string, Assembly> tensors;
  for (size_t s = 0; s < shards.size(); ++s) {
    auto stub = v1::ParameterServer::NewStub(NewChannel(shards[s]));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(timeout));
    auto reader = stub->PullModel(&context, v1::PullModelRequest());
    v1::TensorChunk chunk;
    std::string current;
    while (reader->Read(&chunk)) {
      if (chunk.has_spec()) current = chunk.spec().name();
      if (current.empty()) {
        return absl::DataLossError(absl::StrCat(
            "shard ", s, " at ", shards[s], " sent a chunk before its spec"));
      }
      Assembly& a = tensors[current];
      if (chunk.has_spec()) {
        // A shard is a peer: its spec is checked like a request's, before
        // any size is computed from it.
        absl::Status valid = ValidateTensorSpec(chunk.spec());
        if (!valid.ok() || chunk.spec().name() != current ||
            (!a.spec.name().empty() &&
             !google::protobuf::util::MessageDifferencer::Equals(
                 a.spec, chunk.spec()))) {
          return absl::DataLossError(
              absl::StrCat("shard ", s, " at ", shards[s],
                           " sent a bad spec of ", current, ": ",
                           valid.ok() ? "it disagrees with another shard's"
                                      : valid.message()));
        }
        a.spec = chunk.spec();
      }
      a.version = std::max(a.version, chunk.version());
      const std::string& bytes = chunk.values();
      auto malformed = [&](absl::string_view why) {
        return absl::DataLossError(absl::StrCat("shard ", s, " at ", shards[s],
                                                " sent a malformed chunk of ",
                                                current, ": ", why));
      };
      if (bytes.size() % sizeof(float) != 0) {
        return malformed("values are not whole float32s");
      }
      const int64_t n = static_cast<int64_t>(bytes.size() / sizeof(float));
      // Copied out of the bytes field, which has no alignment promise.
      auto copy_floats = [&](int64_t from, int64_t count, float* to) {
        std::memcpy(to, bytes.data() + from * sizeof(float),
                    count * sizeof(float));
      };
      if (a.spec.kind() == v1::TensorSpec::EMBEDDING) {
        const int64_t dim = a.spec.shape(1);
        const int64_t rows = a.spec.shape(0);  // 0 = unbounded
        int64_t want = 0;
        if (!CheckedMul(chunk.row_ids_size(), dim, &want) || want != n) {
          return malformed(absl::StrCat(chunk.row_ids_size(), " rows of dim ",
                                        dim, " in ", n, " floats"));
        }
        for (int i = 0; i < chunk.row_ids_size(); ++i) {
          const uint64_t id = chunk.row_ids(i);
          if (rows > 0 && id >= static_cast<uint64_t>(rows)) {
            return malformed(
                absl::StrCat("row ", id, " is outside [0, ", rows, ")"));
          }
          std::vector<float>& row = a.rows[id];
          row.resize(dim);
          copy_floats(i * dim, dim, row.data());
        }
        continue;
      }
      const int64_t total = NumElements(a.spec);  // bounded by validation
      if (a.values.empty()) a.values.resize(total);
      const int64_t row_size = RowSize(a.spec);
      const int64_t rows = NumRows(a.spec);
      int64_t at = 0;
      if (!RangeWithin(chunk.part_row_begin(), 0, 0, rows) ||
          !CheckedAdd(chunk.part_row_begin() * row_size, chunk.offset(), &at) ||
          !RangeWithin(at, n, 0, total)) {
        return malformed(absl::StrCat("values at part row ",
                                      chunk.part_row_begin(), " offset ",
                                      chunk.offset(), " outside its shape"));
      }
      if (n > 0) copy_floats(0, n, a.values.data() + at);
      a.filled += n;
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      absl::Status error = FromGrpcStatus(status);
      return absl::Status(error.code(),
                          absl::StrCat("pulling from shard ", s, " at ",
                                       shards[s], ": ", error.message()));
    }
  }

  std::vector<PulledTensor> out;
  for (auto& [name, a] : tensors) {
    PulledTensor t;
    t.name = name;
    t.version = a.version;
    if (a.spec.kind() != v1::TensorSpec::EMBEDDING) {
      if (a.filled != NumElements(a.spec)) {
        return absl::DataLossError(absl::StrCat(
            "tensor ", name, " is incomplete: got ", a.filled, " of ",
            NumElements(a.spec), " values; is a shard missing from --shards?"));
      }
      t.shape.assign(a.spec.shape().begin(), a.spec.shape().end());
      t.values = std::move(a.values);
      out.push_back(std::move(t));
      continue;
    }
    const int64_t dim = a.spec.shape(1);
    const int64_t rows = a.spec.shape(0);
    int64_t dense_floats = 0;
    if (rows > 0 && (!CheckedMul(rows, dim, &dense_floats) ||
                     dense_floats > kMaxDenseTableFloats)) {
      return absl::FailedPreconditionError(
          absl::StrCat("embedding table ", name, " of ", rows, " x ", dim,
                       " floats is too large to write as one dense tensor"));
    }
    if (rows > 0) {
      t.shape = {rows, dim};
      t.values.resize(dense_floats);
      InitializeRows(a.spec, 0, absl::MakeSpan(t.values));
      for (const auto& [id, values] : a.rows) {
        std::copy(values.begin(), values.end(), t.values.begin() + id * dim);
      }
      out.push_back(std::move(t));
      continue;
    }
    PulledTensor ids;
    ids.name = name + ".ids";
    ids.integer = true;
    ids.shape = {static_cast<int64_t>(a.rows.size())};
    t.shape = {static_cast<int64_t>(a.rows.size()), dim};
    for (const auto& [id, values] : a.rows) {
      ids.int_values.push_back(static_cast<int64_t>(id));
      t.values.insert(t.values.end(), values.begin(), values.end());
    }
    out.push_back(std::move(t));
    out.push_back(std::move(ids));
  }
  return out;
}

}  // namespace tessera
