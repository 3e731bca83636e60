// PsClient's data-plane calls: each splits a request over the shards that
// hold its rows (placement, ps/spec/placement.h), hands the pieces to the
// transport, and gathers the replies.

#include <cstring>
#include <future>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
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

// A history of `out_floats` floats, or none (previous empty).
absl::Status CheckHistory(const std::string& tensor, size_t out_floats,
                          const DenseHistory& history) {
  if (history.previous.data() == nullptr ||
      history.previous.size() == out_floats) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("pull of ", out_floats, " floats for ", tensor,
                   " with a history of ", history.previous.size()));
}

// The rows of a push piece of at most `max_piece_bytes` (at least one row;
// 0: not cut) for rows of `row_size` floats.
int64_t MaxPieceRows(int64_t max_piece_bytes, int64_t row_size) {
  if (max_piece_bytes <= 0) return 0;
  const int64_t row_bytes = row_size * static_cast<int64_t>(sizeof(float));
  return std::max<int64_t>(1,
                           max_piece_bytes / std::max<int64_t>(1, row_bytes));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const PsClient::TensorInfo>>
PsClient::FindDensePull(const std::string& tensor, int64_t row_begin,
                        size_t floats) const {
  auto info = Find(tensor);
  if (!info.ok()) return info.status();
  const TensorInfo& t = **info;
  if (t.embedding) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensor, " is an embedding table: pull it with PullRows"));
  }
  absl::Status range = CheckDenseRange(tensor, t.row_size, t.num_rows,
                                       row_begin, floats, "pull");
  if (!range.ok()) return range;
  return info;
}

void PsClient::PullDenseAsync(const std::string& tensor, int64_t row_begin,
                              absl::Span<float> out, DoneCallback done,
                              const CallOptions& options) {
  PullDenseAsync(tensor, row_begin, out, DenseHistory(), std::move(done),
                 options);
}

void PsClient::PullDenseAsync(const std::string& tensor, int64_t row_begin,
                              absl::Span<float> out,
                              const DenseHistory& history, DoneCallback done,
                              const CallOptions& options) {
  const bool keep_history = history.previous.data() != nullptr;
  absl::Status history_ok = CheckHistory(tensor, out.size(), history);
  if (!history_ok.ok()) return done(history_ok);
  auto info = FindDensePull(tensor, row_begin, out.size());
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  auto call =
      NewCall(v1::DataHeader::PULL_DENSE, tensor, std::move(done), options);
  call->pieces =
      DensePieces(v1::DataHeader::PULL_DENSE, tensor, t.parts, t.row_size,
                  row_begin, out.size() / t.row_size, options);
  for (Piece& piece : call->pieces) {
    const int64_t offset = piece.header.row_begin() - row_begin;
    piece.out = out.data() + offset * t.row_size;
    if (keep_history) {
      piece.previous = history.previous.data() + offset * t.row_size;
      piece.extrapolate = history.extrapolate;
    }
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

std::future<absl::Status> PsClient::PullDense(const std::string& tensor,
                                              int64_t row_begin,
                                              absl::Span<float> out,
                                              const DenseHistory& history,
                                              const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullDenseAsync(tensor, row_begin, out, history, std::move(done), options);
  });
}

size_t PulledDense::size() const {
  size_t floats = 0;
  for (absl::Span<const float> span : spans_) floats += span.size();
  return floats;
}

absl::Status PulledDense::CopyTo(absl::Span<float> out) const {
  if (out.size() != size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("copy of ", size(), " pulled floats into ", out.size()));
  }
  float* to = out.data();
  for (absl::Span<const float> span : spans_) {
    std::memcpy(to, span.data(), span.size() * sizeof(float));
    to += span.size();
  }
  return absl::OkStatus();
}

void PsClient::PullDenseInPlaceAsync(const std::string& tensor,
                                     int64_t row_begin, size_t floats,
                                     PulledDenseCallback done,
                                     const CallOptions& options) {
  auto info = FindDensePull(tensor, row_begin, floats);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  auto in_place = std::make_shared<client_internal::InPlacePull>();
  auto call = NewCall(
      v1::DataHeader::PULL_DENSE, tensor,
      [in_place, done = std::move(done)](const absl::Status& status) {
        if (!status.ok()) return done(status);
        PulledDense pulled;
        pulled.holds_ = std::move(in_place->holds);
        pulled.spans_ = std::move(in_place->spans);
        done(std::move(pulled));
      },
      options);
  call->pieces = DensePieces(
      v1::DataHeader::PULL_DENSE, tensor, t.parts, t.row_size, row_begin,
      static_cast<int64_t>(floats) / t.row_size, options);
  in_place->holds.resize(call->pieces.size());
  in_place->spans.resize(call->pieces.size());
  for (size_t i = 0; i < call->pieces.size(); ++i) {
    Piece& piece = call->pieces[i];
    piece.in_place = in_place;
    piece.in_place_slot = i;
    piece.expected_bytes =
        piece.header.row_count() * t.row_size * sizeof(float);
  }
  Submit(std::move(call));
}

std::future<absl::StatusOr<PulledDense>> PsClient::PullDenseInPlace(
    const std::string& tensor, int64_t row_begin, size_t floats,
    const CallOptions& options) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<PulledDense>>>();
  std::future<absl::StatusOr<PulledDense>> future = promise->get_future();
  PullDenseInPlaceAsync(
      tensor, row_begin, floats,
      [promise](absl::StatusOr<PulledDense> pulled) {
        promise->set_value(std::move(pulled));
      },
      options);
  return future;
}

void PsClient::PushDenseAsync(const std::string& tensor, int64_t row_begin,
                              std::shared_ptr<const std::vector<float>> grad,
                              DoneCallback done, const CallOptions& options) {
  if (grad == nullptr) {
    return done(absl::InvalidArgumentError("null gradient"));
  }
  const absl::Span<const float> values(*grad);
  PushDenseAsync(tensor, row_begin, std::move(grad), values, std::move(done),
                 options);
}

void PsClient::PushDenseAsync(const std::string& tensor, int64_t row_begin,
                              std::shared_ptr<const void> owner,
                              absl::Span<const float> grad, DoneCallback done,
                              const CallOptions& options) {
  if (owner == nullptr) {
    return done(absl::InvalidArgumentError("null gradient owner"));
  }
  auto info = Find(tensor);
  if (!info.ok()) return done(info.status());
  const TensorInfo& t = **info;
  if (t.embedding) {
    return done(absl::InvalidArgumentError(absl::StrCat(
        tensor, " is an embedding table: push to it with PushRows")));
  }
  absl::Status range = CheckDenseRange(tensor, t.row_size, t.num_rows,
                                       row_begin, grad.size(), "gradient");
  if (!range.ok()) return done(range);
  auto call =
      NewCall(v1::DataHeader::PUSH_DENSE, tensor, std::move(done), options);
  const int64_t max_piece_rows =
      MaxPieceRows(options_.max_push_piece_bytes, t.row_size);
  call->pieces =
      DensePieces(v1::DataHeader::PUSH_DENSE, tensor, t.parts, t.row_size,
                  row_begin, grad.size() / t.row_size, options, max_piece_rows);
  for (Piece& piece : call->pieces) {
    const int64_t offset = piece.header.row_begin() - row_begin;
    piece.values_owner = owner;
    piece.values = grad.data() + offset * t.row_size;
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
                                              std::shared_ptr<const void> owner,
                                              absl::Span<const float> grad,
                                              const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushDenseAsync(tensor, row_begin, std::move(owner), grad, std::move(done),
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

void PsClient::SubmitDenseBatch(bool push,
                                absl::Span<const DenseRangePull> pulls,
                                absl::Span<const DenseRangePush> pushes,
                                DoneCallback done, const CallOptions& options) {
  const size_t count = push ? pushes.size() : pulls.size();
  if (count == 0) return done(absl::OkStatus());
  // Check every range before anything is sent.
  std::vector<std::shared_ptr<const TensorInfo>> infos(count);
  absl::flat_hash_set<absl::string_view> names;
  for (size_t i = 0; i < count; ++i) {
    const std::string& tensor = push ? pushes[i].tensor : pulls[i].tensor;
    const size_t floats = push ? pushes[i].grad.size() : pulls[i].out.size();
    const int64_t row_begin = push ? pushes[i].row_begin : pulls[i].row_begin;
    if (!names.insert(tensor).second) {
      return done(absl::InvalidArgumentError(
          absl::StrCat("dense batch names ", tensor, " twice")));
    }
    if (push && pushes[i].owner == nullptr) {
      return done(absl::InvalidArgumentError(
          absl::StrCat("null gradient owner for ", tensor)));
    }
    if (!push) {
      absl::Status history_ok = CheckHistory(tensor, floats, pulls[i].history);
      if (!history_ok.ok()) return done(history_ok);
    }
    auto info = Find(tensor);
    if (!info.ok()) return done(info.status());
    infos[i] = *std::move(info);
    if (infos[i]->embedding) {
      return done(absl::InvalidArgumentError(
          absl::StrCat(tensor, " is an embedding table: address it by rows")));
    }
    absl::Status range =
        CheckDenseRange(tensor, infos[i]->row_size, infos[i]->num_rows,
                        row_begin, floats, push ? "gradient" : "pull");
    if (!range.ok()) return done(range);
  }
  const auto single_op =
      push ? v1::DataHeader::PUSH_DENSE : v1::DataHeader::PULL_DENSE;
  const auto batch_op = push ? v1::DataHeader::PUSH_DENSE_BATCH
                             : v1::DataHeader::PULL_DENSE_BATCH;
  const std::string& first = push ? pushes[0].tensor : pulls[0].tensor;
  auto call = NewCall(
      batch_op,
      count == 1 ? first : absl::StrCat(first, " and ", count - 1, " more"),
      std::move(done), options);
  // Every range's pieces (one per part it covers), then per shard the small
  // ones gathered into batches of at most max_batch_bytes.
  struct Range {
    Piece piece;
    Piece::BatchRange memory;
    int64_t bytes;
  };
  std::vector<std::vector<Range>> by_shard(shards_.size());
  std::vector<std::shared_ptr<const void>> owners;
  for (size_t i = 0; i < count; ++i) {
    const TensorInfo& t = *infos[i];
    const std::string& tensor = push ? pushes[i].tensor : pulls[i].tensor;
    const int64_t row_begin = push ? pushes[i].row_begin : pulls[i].row_begin;
    const size_t floats = push ? pushes[i].grad.size() : pulls[i].out.size();
    if (push) owners.push_back(pushes[i].owner);
    // A large push is cut as PushDense cuts it.
    const int64_t max_piece_rows =
        push ? MaxPieceRows(options_.max_push_piece_bytes, t.row_size) : 0;
    for (Piece& piece :
         DensePieces(single_op, tensor, t.parts, t.row_size, row_begin,
                     static_cast<int64_t>(floats) / t.row_size, options,
                     max_piece_rows)) {
      const int64_t offset =
          (piece.header.row_begin() - row_begin) * t.row_size;
      Range r;
      r.memory.floats = piece.header.row_count() * t.row_size;
      r.bytes = static_cast<int64_t>(r.memory.floats * sizeof(float));
      if (push) {
        r.memory.grad = pushes[i].grad.data() + offset;
        piece.values_owner = pushes[i].owner;
        piece.values = r.memory.grad;
        piece.values_bytes = r.bytes;
      } else {
        r.memory.out = pulls[i].out.data() + offset;
        piece.out = r.memory.out;
        if (pulls[i].history.previous.data() != nullptr) {
          r.memory.previous = pulls[i].history.previous.data() + offset;
          r.memory.extrapolate = pulls[i].history.extrapolate;
          piece.previous = r.memory.previous;
          piece.extrapolate = r.memory.extrapolate;
        }
        piece.expected_bytes = r.bytes;
      }
      r.piece = std::move(piece);
      by_shard[r.piece.shard].push_back(std::move(r));
    }
  }
  std::shared_ptr<const void> batch_owner;
  if (push) {
    batch_owner = std::make_shared<std::vector<std::shared_ptr<const void>>>(
        std::move(owners));
  }
  const int64_t limit = options_.max_batch_bytes;
  for (size_t shard = 0; shard < by_shard.size(); ++shard) {
    std::vector<Range>& ranges = by_shard[shard];
    const int64_t range_limit =
        transport_->SharesMemoryWith(static_cast<int>(shard))
            ? limit
            : std::min(limit, options_.max_batch_range_bytes);
    std::vector<Range*> small;
    for (Range& r : ranges) {
      if (limit > 0 && r.bytes <= range_limit) {
        small.push_back(&r);
      } else {
        call->pieces.push_back(std::move(r.piece));
      }
    }
    // Batches in order, each up to `limit` bytes; a batch of one range goes
    // as that range's own request.
    size_t k = 0;
    while (k < small.size()) {
      size_t end = k + 1;
      int64_t bytes = small[k]->bytes;
      while (end < small.size() && bytes + small[end]->bytes <= limit &&
             end - k < static_cast<size_t>(kMaxDenseRangesPerRequest)) {
        bytes += small[end++]->bytes;
      }
      if (end - k == 1) {
        call->pieces.push_back(std::move(small[k]->piece));
        k = end;
        continue;
      }
      Piece batch;
      batch.shard = static_cast<int>(shard);
      batch.header.set_op(batch_op);
      batch.header.set_clock(options.clock);
      for (; k < end; ++k) {
        const v1::DataHeader& h = small[k]->piece.header;
        v1::DataHeader::DenseRange* range = batch.header.add_dense_ranges();
        range->set_tensor_name(h.tensor_name());
        range->set_row_begin(h.row_begin());
        range->set_row_count(h.row_count());
        range->set_row_size(h.row_size());
        batch.batch.push_back(small[k]->memory);
      }
      if (push) {
        batch.batch_owner = batch_owner;
        batch.values_bytes = static_cast<size_t>(bytes);
      } else {
        batch.expected_bytes = static_cast<size_t>(bytes);
      }
      call->pieces.push_back(std::move(batch));
    }
  }
  Submit(std::move(call));
}

void PsClient::PullDenseBatchAsync(std::vector<DenseRangePull> ranges,
                                   DoneCallback done,
                                   const CallOptions& options) {
  SubmitDenseBatch(false, ranges, {}, std::move(done), options);
}

std::future<absl::Status> PsClient::PullDenseBatch(
    std::vector<DenseRangePull> ranges, const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullDenseBatchAsync(std::move(ranges), std::move(done), options);
  });
}

void PsClient::PushDenseBatchAsync(std::vector<DenseRangePush> ranges,
                                   DoneCallback done,
                                   const CallOptions& options) {
  SubmitDenseBatch(true, {}, ranges, std::move(done), options);
}

std::future<absl::Status> PsClient::PushDenseBatch(
    std::vector<DenseRangePush> ranges, const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushDenseBatchAsync(std::move(ranges), std::move(done), options);
  });
}

void PsClient::SubmitRows(int op_number, absl::Span<const TableRowsPull> pulls,
                          absl::Span<const TableRowsPush> pushes,
                          DoneCallback done, const CallOptions& options) {
  const auto op = static_cast<v1::DataHeader::Op>(op_number);
  const bool push =
      op == v1::DataHeader::PUSH_ROWS || op == v1::DataHeader::PUSH_TABLES;
  const bool tables_op =
      op == v1::DataHeader::PUSH_TABLES || op == v1::DataHeader::PULL_TABLES;
  const size_t count = push ? pushes.size() : pulls.size();
  auto tensor_of = [&](size_t t) -> const std::string& {
    return push ? pushes[t].tensor : pulls[t].tensor;
  };
  auto ids_of = [&](size_t t) { return push ? pushes[t].ids : pulls[t].ids; };

  // Check every table before anything is sent.
  std::vector<int64_t> dims(count);
  absl::flat_hash_set<absl::string_view> names;
  for (size_t t = 0; t < count; ++t) {
    const std::string& tensor = tensor_of(t);
    auto info = Find(tensor);
    if (!info.ok()) return done(info.status());
    if (!(*info)->embedding) {
      return done(absl::InvalidArgumentError(absl::StrCat(
          tensor, " is a dense tensor: ",
          push ? "push to it with PushDense" : "pull it with PullDense")));
    }
    const int64_t dim = (*info)->row_size;
    const size_t ids = ids_of(t).size();
    const size_t floats = push ? pushes[t].grad.size() : pulls[t].out.size();
    if (floats != ids * dim) {
      return done(absl::InvalidArgumentError(
          push ? absl::StrCat("gradient for ", tensor, " has ", floats,
                              " floats; ", ids, " rows of dim ", dim, " need ",
                              ids * dim)
               : absl::StrCat("pull of ", ids, " rows of ", tensor, " needs ",
                              ids * dim, " floats, got ", floats)));
    }
    if (!names.insert(tensor).second) {
      return done(absl::InvalidArgumentError(
          absl::StrCat("the call names ", tensor, " twice")));
    }
    dims[t] = dim;
  }

  // What each shard gets: every table's rows it holds, each id once.
  struct ShardRows {
    std::vector<uint64_t> ids;
    std::vector<float> values;  // pushes: summed gradients
    std::vector<v1::DataHeader::TableRows> runs;
    std::vector<float*> out_rows;  // pulls
    std::vector<std::pair<size_t, int64_t>> out_runs;
  };
  const int n = num_shards();
  std::vector<ShardRows> shards(n);
  std::vector<size_t> run_begin(n);
  auto call =
      NewCall(op, count == 1 ? tensor_of(0) : absl::StrCat(count, " tables"),
              std::move(done), options);
  absl::flat_hash_map<uint64_t, size_t> first;  // id -> position
  for (size_t t = 0; t < count; ++t) {
    const absl::Span<const uint64_t> ids = ids_of(t);
    if (ids.empty()) continue;
    const int64_t dim = dims[t];
    for (int s = 0; s < n; ++s) run_begin[s] = shards[s].ids.size();
    first.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      auto [it, inserted] = first.try_emplace(ids[i], i);
      const int shard = ShardOfRow(ids[i], n);
      ShardRows& to = shards[shard];
      if (push) {
        const float* g = pushes[t].grad.data() + i * dim;
        if (inserted) {
          it->second = to.ids.size();
          to.ids.push_back(ids[i]);
          to.values.insert(to.values.end(), g, g + dim);
        } else {
          // Summed in arrival order, as the shard sums repeated ids.
          float* sum = to.values.data() + it->second * dim;
          for (int64_t j = 0; j < dim; ++j) sum[j] += g[j];
        }
      } else {
        float* out = pulls[t].out.data();
        if (inserted) {
          to.ids.push_back(ids[i]);
          to.out_rows.push_back(out + i * dim);
        } else {
          call->duplicates.push_back(
              {out + it->second * dim, out + i * dim, dim});
        }
      }
    }
    for (int s = 0; s < n; ++s) {
      const size_t rows = shards[s].ids.size() - run_begin[s];
      if (rows == 0) continue;
      v1::DataHeader::TableRows run;
      run.set_tensor_name(tensor_of(t));
      run.set_row_count(rows);
      run.set_row_size(dim);
      shards[s].runs.push_back(std::move(run));
      shards[s].out_runs.emplace_back(rows, dim);
    }
  }

  for (int s = 0; s < n; ++s) {
    ShardRows& rows = shards[s];
    if (rows.ids.empty()) continue;
    Piece piece;
    piece.shard = s;
    piece.header = RequestHeader(op, tables_op ? "" : tensor_of(0), options);
    if (tables_op) {
      *piece.header.mutable_tables() = {rows.runs.begin(), rows.runs.end()};
    } else {
      piece.header.set_row_count(rows.ids.size());
      piece.header.set_row_size(rows.runs[0].row_size());
    }
    auto owned_ids =
        std::make_shared<const std::vector<uint64_t>>(std::move(rows.ids));
    piece.ids = owned_ids->data();
    piece.ids_bytes = owned_ids->size() * sizeof(uint64_t);
    piece.ids_owner = std::move(owned_ids);
    if (push) {
      auto owned_values =
          std::make_shared<const std::vector<float>>(std::move(rows.values));
      piece.values = owned_values->data();
      piece.values_bytes = owned_values->size() * sizeof(float);
      piece.values_owner = std::move(owned_values);
    } else {
      for (const auto& [count, floats] : rows.out_runs) {
        piece.expected_bytes += count * floats * sizeof(float);
      }
      piece.out_rows = std::move(rows.out_rows);
      piece.out_runs = std::move(rows.out_runs);
    }
    call->pieces.push_back(std::move(piece));
  }
  Submit(std::move(call));
}

void PsClient::PullRowsAsync(const std::string& tensor,
                             absl::Span<const uint64_t> ids,
                             absl::Span<float> out, DoneCallback done,
                             const CallOptions& options) {
  const TableRowsPull pull{tensor, ids, out};
  SubmitRows(v1::DataHeader::PULL_ROWS, absl::MakeConstSpan(&pull, 1), {},
             std::move(done), options);
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
  const TableRowsPush push{tensor, ids, grad};
  SubmitRows(v1::DataHeader::PUSH_ROWS, {}, absl::MakeConstSpan(&push, 1),
             std::move(done), options);
}

std::future<absl::Status> PsClient::PushRows(const std::string& tensor,
                                             absl::Span<const uint64_t> ids,
                                             absl::Span<const float> grad,
                                             const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushRowsAsync(tensor, ids, grad, std::move(done), options);
  });
}

void PsClient::PullTablesAsync(absl::Span<const TableRowsPull> tables,
                               DoneCallback done, const CallOptions& options) {
  SubmitRows(v1::DataHeader::PULL_TABLES, tables, {}, std::move(done), options);
}

std::future<absl::Status> PsClient::PullTables(
    absl::Span<const TableRowsPull> tables, const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PullTablesAsync(tables, std::move(done), options);
  });
}

void PsClient::PushTablesAsync(absl::Span<const TableRowsPush> tables,
                               DoneCallback done, const CallOptions& options) {
  SubmitRows(v1::DataHeader::PUSH_TABLES, {}, tables, std::move(done), options);
}

std::future<absl::Status> PsClient::PushTables(
    absl::Span<const TableRowsPush> tables, const CallOptions& options) {
  return AsFuture([&](DoneCallback done) {
    PushTablesAsync(tables, std::move(done), options);
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
