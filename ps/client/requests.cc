// PsClient's data-plane calls: each splits a request over the shards that
// hold its rows (placement, ps/spec/placement.h), hands the pieces to the
// transport, and gathers the replies.

#include <future>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ps/client/ps_client.h"
#include "ps/client/transport.h"
#include "ps/common/checked_math.h"
#include "ps/spec/placement.h"
#include "ps/wire/data_wire.h"

namespace tessera {
namespace {

v1::DataHeader RequestHeader(v1::DataHeader::Op op, const std::string& tensor,
                             const CallOptions& options) {
  v1::DataHeader header;
  header.set_op(op);
  header.set_tensor_name(tensor);
  header.set_clock(options.clock);
  return header;
}

// One piece per part (of `parts`, rows of `row_size` floats) that rows
// [row_begin, row_begin + rows) of a dense tensor touch, its header set
// (rows clipped to the part); payload and destination are the caller's to
// fill.
// The pieces of a dense request: one per shard part it covers, each cut
// further into runs of at most `max_piece_rows` rows (0: not cut).
std::vector<Piece> DensePieces(v1::DataHeader::Op op, const std::string& tensor,
                               const std::vector<PartPlacement>& parts,
                               int64_t row_size, int64_t row_begin,
                               int64_t rows, const CallOptions& options,
                               int64_t max_piece_rows = 0) {
  std::vector<Piece> pieces;
  const int64_t row_end = row_begin + rows;  // Checked by CheckDenseRange.
  for (const PartPlacement& part : parts) {
    const int64_t lo = std::max(row_begin, part.row_begin);
    const int64_t hi = std::min(row_end, part.row_end);
    const int64_t step = max_piece_rows > 0 ? max_piece_rows : hi - lo;
    for (int64_t begin = lo; begin < hi; begin += std::min(step, hi - begin)) {
      Piece piece;
      piece.shard = part.shard;
      piece.header = RequestHeader(op, tensor, options);
      piece.header.set_row_begin(begin);
      piece.header.set_row_count(std::min(step, hi - begin));
      piece.header.set_row_size(row_size);
      pieces.push_back(std::move(piece));
    }
  }
  return pieces;
}

}  // namespace

using client_internal::GrpcDeadline;
using client_internal::kTick;
using client_internal::Pretty;
using client_internal::WithShard;

// --- Data plane -------------------------------------------------------------

std::unique_ptr<PsClient::Call> PsClient::NewCall(int op,
                                                  const std::string& tensor,
                                                  DoneCallback done,
                                                  const CallOptions& options) {
  auto call = std::make_unique<Call>();
  call->op = static_cast<v1::DataHeader::Op>(op);
  call->tensor = tensor;
  call->start = absl::Now();
  call->timeout = DeadlineOf(options);
  call->deadline = call->start + call->timeout;
  call->done = std::move(done);
  return call;
}

void PsClient::Submit(std::unique_ptr<Call> call) {
  // A piece larger than its shard accepts would only be dropped with the
  // connection (beyond ZeroMQ's limit) or refused: say so now, send nothing.
  for (const Piece& piece : call->pieces) {
    const int64_t limit = shards_[piece.shard].max_message_bytes;
    const int64_t payload =
        static_cast<int64_t>(piece.ids_bytes + piece.values_bytes);
    // The header's size is computed only when the payload comes near.
    if (limit <= 0 ||
        payload + static_cast<int64_t>(kMaxHeaderBytes) <= limit) {
      continue;
    }
    const int64_t bytes =
        payload + static_cast<int64_t>(piece.header.ByteSizeLong());
    if (bytes > limit) {
      call->done(absl::ResourceExhaustedError(absl::StrCat(
          DataOpName(call->op), " of ", call->tensor, ": ", bytes,
          " bytes to shard ", piece.shard, " at ",
          shards_[piece.shard].data_address, " exceed its --max_message_bytes=",
          limit, "; send it in smaller requests")));
      return;
    }
  }
  transport_->Submit(std::move(call));
}

namespace {

// Wraps a future around a callback-style call.
template <typename Start>
std::future<absl::Status> AsFuture(Start start) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> future = promise->get_future();
  start([promise](const absl::Status& status) { promise->set_value(status); });
  return future;
}

// The rows [row_begin, row_begin + floats / row_size) of a dense tensor, or
// an error saying why they are not.
absl::Status CheckDenseRange(const std::string& tensor, int64_t row_size,
                             int64_t num_rows, int64_t row_begin, size_t floats,
                             const char* what) {
  if (floats == 0 || floats % row_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " of ", floats, " floats for ", tensor,
                     " is not a non-empty run of rows of ", row_size));
  }
  const int64_t rows = static_cast<int64_t>(floats) / row_size;
  if (!RangeWithin(row_begin, rows, 0, num_rows)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " for ", tensor, " of ", rows, " rows from row ",
                     row_begin, " is outside its ", num_rows, " rows"));
  }
  return absl::OkStatus();
}

}  // namespace

void PsClient::PullDenseAsync(const std::string& tensor, int64_t row_begin,
                              absl::Span<float> out, DoneCallback done,
                              const CallOptions& options) {
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (t.embedding) {
    return done(absl::InvalidArgumentError(
        absl::StrCat(tensor, " is an embedding table: pull it with PullRows")));
  }
  absl::Status range = CheckDenseRange(tensor, t.row_size, t.num_rows,
                                       row_begin, out.size(), "pull");
  if (!range.ok()) return done(range);
  auto call =
      NewCall(v1::DataHeader::PULL_DENSE, tensor, std::move(done), options);
  call->pieces =
      DensePieces(v1::DataHeader::PULL_DENSE, tensor, t.parts, t.row_size,
                  row_begin, out.size() / t.row_size, options);
  for (Piece& piece : call->pieces) {
    const int64_t offset = piece.header.row_begin() - row_begin;
    piece.out = out.data() + offset * t.row_size;
    piece.expected_bytes =
        piece.header.row_count() * t.row_size * sizeof(float);
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PullDense(const std::string& tensor,
                                              int64_t row_begin,
                                              absl::Span<float> out,
                                              const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullDenseAsync(tensor, row_begin, out, std::move(done), options);
  });
}

void PsClient::PushDenseAsync(const std::string& tensor, int64_t row_begin,
                              std::shared_ptr<const std::vector<float>> grad,
                              DoneCallback done, const CallOptions& options) {
  if (grad == nullptr) {
    return done(absl::InvalidArgumentError("null gradient"));
  }
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (t.embedding) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        tensor, " is an embedding table: push to it with PushRows")));
  }
  absl::Status range = CheckDenseRange(tensor, t.row_size, t.num_rows,
                                       row_begin, grad->size(), "gradient");
  if (!range.ok()) return done(range);
  auto call =
      NewCall(v1::DataHeader::PUSH_DENSE, tensor, std::move(done), options);
  const int64_t row_bytes = t.row_size * static_cast<int64_t>(sizeof(float));
  const int64_t max_piece_rows =
      options_.max_push_piece_bytes > 0
          ? std::max<int64_t>(1, options_.max_push_piece_bytes /
                                     std::max<int64_t>(1, row_bytes))
          : 0;
  call->pieces = DensePieces(v1::DataHeader::PUSH_DENSE, tensor, t.parts,
                             t.row_size, row_begin, grad->size() / t.row_size,
                             options, max_piece_rows);
  for (Piece& piece : call->pieces) {
    const int64_t offset = piece.header.row_begin() - row_begin;
    piece.values_owner = grad;
    piece.values = grad->data() + offset * t.row_size;
    piece.values_bytes = piece.header.row_count() * t.row_size * sizeof(float);
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PushDense(
    const std::string& tensor, int64_t row_begin,
    std::shared_ptr<const std::vector<float>> grad,
    const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushDenseAsync(tensor, row_begin, std::move(grad), std::move(done),
                   options);
  });
}

std::future<absl::Status> PsClient::PushDense(const std::string& tensor,
                                              int64_t row_begin,
                                              absl::Span<const float> grad,
                                              const CallOptions& options) {
  return PushDense(
      tensor, row_begin,
      std::make_shared<const std::vector<float>>(grad.begin(), grad.end()),
      options);
}

void PsClient::PullRowsAsync(const std::string& tensor,
                             absl::Span<const uint64_t> ids,
                             absl::Span<float> out, DoneCallback done,
                             const CallOptions& options) {
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (!t.embedding) {
    return done(absl::InvalidArgumentError(
        absl::StrCat(tensor, " is a dense tensor: pull it with PullDense")));
  }
  const int64_t dim = t.row_size;
  if (out.size() != ids.size() * dim) {
    return done(absl::InvalidArgumentError(
        absl::StrCat("pull of ", ids.size(), " rows of ", tensor, " needs ",
                     ids.size() * dim, " floats, got ", out.size())));
  }
  const int n = num_shards();
  std::vector<std::vector<uint64_t>> shard_ids(n);
  std::vector<std::vector<int64_t>> shard_rows(n);
  absl::flat_hash_map<uint64_t, int64_t> first;
  auto call =
      NewCall(v1::DataHeader::PULL_ROWS, tensor, std::move(done), options);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto [it, inserted] = first.try_emplace(ids[i], i);
    if (!inserted) {
      call->duplicates.emplace_back(it->second, i);
      continue;
    }
    const int shard = ShardOfRow(ids[i], n);
    shard_ids[shard].push_back(ids[i]);
    shard_rows[shard].push_back(i);
  }
  call->out = out.data();
  call->row_size = dim;
  for (int s = 0; s < n; ++s) {
    if (shard_ids[s].empty()) continue;
    auto owned =
        std::make_shared<const std::vector<uint64_t>>(std::move(shard_ids[s]));
    Piece piece;
    piece.shard = s;
    piece.header = RequestHeader(v1::DataHeader::PULL_ROWS, tensor, options);
    piece.header.set_row_count(owned->size());
    piece.header.set_row_size(dim);
    piece.ids = owned->data();
    piece.ids_bytes = owned->size() * sizeof(uint64_t);
    piece.ids_owner = std::move(owned);
    piece.out_rows = std::move(shard_rows[s]);
    piece.expected_bytes = piece.out_rows.size() * dim * sizeof(float);
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PullRows(const std::string& tensor,
                                             absl::Span<const uint64_t> ids,
                                             absl::Span<float> out,
                                             const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullRowsAsync(tensor, ids, out, std::move(done), options);
  });
}

void PsClient::PushRowsAsync(const std::string& tensor,
                             absl::Span<const uint64_t> ids,
                             absl::Span<const float> grad, DoneCallback done,
                             const CallOptions& options) {
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (!t.embedding) {
    return done(absl::InvalidArgumentError(
        absl::StrCat(tensor, " is a dense tensor: push to it with PushDense")));
  }
  const int64_t dim = t.row_size;
  if (grad.size() != ids.size() * dim) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        "gradient for ", tensor, " has ", grad.size(), " floats; ", ids.size(),
        " rows of dim ", dim, " need ", ids.size() * dim)));
  }
  const int n = num_shards();
  std::vector<std::vector<uint64_t>> shard_ids(n);
  std::vector<std::vector<float>> shard_values(n);
  // id -> (shard, row within the shard's piece)
  absl::flat_hash_map<uint64_t, std::pair<int, size_t>> where;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* g = grad.data() + i * dim;
    auto it = where.find(ids[i]);
    if (it != where.end()) {
      // Summed in arrival order, as the shard sums repeated ids.
      float* sum =
          shard_values[it->second.first].data() + it->second.second * dim;
      for (int64_t j = 0; j < dim; ++j) sum[j] += g[j];
      continue;
    }
    const int shard = ShardOfRow(ids[i], n);
    where.emplace(ids[i], std::make_pair(shard, shard_ids[shard].size()));
    shard_ids[shard].push_back(ids[i]);
    shard_values[shard].insert(shard_values[shard].end(), g, g + dim);
  }
  auto call =
      NewCall(v1::DataHeader::PUSH_ROWS, tensor, std::move(done), options);
  for (int s = 0; s < n; ++s) {
    if (shard_ids[s].empty()) continue;
    auto owned_ids =
        std::make_shared<const std::vector<uint64_t>>(std::move(shard_ids[s]));
    auto owned_values =
        std::make_shared<const std::vector<float>>(std::move(shard_values[s]));
    Piece piece;
    piece.shard = s;
    piece.header = RequestHeader(v1::DataHeader::PUSH_ROWS, tensor, options);
    piece.header.set_row_count(owned_ids->size());
    piece.header.set_row_size(dim);
    piece.ids = owned_ids->data();
    piece.ids_bytes = owned_ids->size() * sizeof(uint64_t);
    piece.ids_owner = std::move(owned_ids);
    piece.values = owned_values->data();
    piece.values_bytes = owned_values->size() * sizeof(float);
    piece.values_owner = std::move(owned_values);
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

std::future<absl::Status> PsClient::PushRows(const std::string& tensor,
                                             absl::Span<const uint64_t> ids,
                                             absl::Span<const float> grad,
                                             const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushRowsAsync(tensor, ids, grad, std::move(done), options);
  });
}

absl::Status PsClient::Ping(int shard, const CallOptions& options) {
  if (shard < 0 || shard >= num_shards()) {
    return absl::InvalidArgumentError(absl::StrCat("no shard ", shard));
  }
  return AsFuture([&](DoneCallback done) {
           auto call =
               NewCall(v1::DataHeader::PING, "", std::move(done), options);
           Piece piece;
           piece.shard = shard;
           piece.header = RequestHeader(v1::DataHeader::PING, "", options);
           call->pieces.push_back(std::move(piece));
           Submit(std::move(call));
         })
      .get();
}

}  // namespace tessera
