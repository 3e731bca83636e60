#include "ps/server/ps_service.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ps/common/grpc_status.h"
#include "ps/common/reject_reason.h"
#include "ps/common/status_macros.h"
#include "ps/spec/placement.h"

namespace tessera {
namespace {

constexpr int64_t kDefaultChunkFloats = 256 * 1024;    // 1 MiB
constexpr int64_t kMaxChunkFloats = kMaxEmbeddingDim;  // 16 MiB

// Records one finished call's metrics when it goes out of scope.
class CallScope {
 public:
  CallScope(Shard* shard, const char* rpc, int64_t bytes_in)
      : shard_(shard), rpc_(rpc), bytes_in_(bytes_in), start_(absl::Now()) {}
  ~CallScope() {
    shard_->RecordRequest(rpc_, status_, absl::Now() - start_, bytes_in_,
                          bytes_out_);
  }
  grpc::Status Finish(const absl::Status& status) {
    status_ = status;
    return ToGrpcStatus(status);
  }
  int64_t* bytes_out() { return &bytes_out_; }

 private:
  Shard* const shard_;
  const std::string rpc_;
  const int64_t bytes_in_;
  const absl::Time start_;
  int64_t bytes_out_ = 0;
  absl::Status status_;
};

void SetValues(absl::Span<const float> values, v1::TensorChunk* chunk) {
  chunk->mutable_values()->assign(reinterpret_cast<const char*>(values.data()),
                                  values.size() * sizeof(float));
}

}  // namespace

grpc::Status ParameterServerService::CreateTensors(
    grpc::ServerContext*, const v1::CreateTensorsRequest* request,
    v1::CreateTensorsResponse* response) {
  CallScope call(shard_, "CreateTensors", request->ByteSizeLong());
  const std::vector<v1::TensorSpec> specs(request->specs().begin(),
                                          request->specs().end());
  auto result = shard_->CreateTensors(specs);
  if (!result.ok()) return call.Finish(result.status());
  response->set_created(result->created);
  response->set_existing(result->existing);
  return call.Finish(absl::OkStatus());
}

grpc::Status ParameterServerService::ListTensors(
    grpc::ServerContext*, const v1::ListTensorsRequest*,
    v1::ListTensorsResponse* response) {
  CallScope call(shard_, "ListTensors", 0);
  absl::Status serving = shard_->CheckServing(false);
  if (!serving.ok()) {
    shard_->CountRejected(RejectReasonOf(serving));
    return call.Finish(serving);
  }
  for (auto& part : shard_->store()->List()) {
    *response->add_parts() = std::move(part);
  }
  return call.Finish(absl::OkStatus());
}

absl::Status ParameterServerService::StreamTensor(
    grpc::ServerContext* context, const std::string& tensor,
    const google::protobuf::RepeatedField<uint64_t>& ids,
    int64_t max_chunk_floats, grpc::ServerWriter<v1::TensorChunk>* writer,
    int64_t* sent) {
  auto info = shard_->store()->Describe(tensor);
  if (!info.ok()) {
    shard_->CountRejected(RejectReasonOf(info.status()));
    return info.status();
  }
  const v1::TensorSpec& spec = info->spec();
  auto write = [&](v1::TensorChunk* chunk) -> absl::Status {
    if (context->IsCancelled()) {
      return absl::CancelledError("the client cancelled the pull");
    }
    *sent += chunk->values().size();
    if (!writer->Write(*chunk)) {
      return absl::UnavailableError("the client went away mid-stream");
    }
    return absl::OkStatus();
  };

  if (spec.kind() == v1::TensorSpec::EMBEDDING) {
    const int64_t dim = spec.shape(1);
    // A chunk carries whole rows, at least one even when the client asked
    // for smaller chunks; a row larger than the largest chunk is refused
    // rather than allocated (specs bound dim by kMaxEmbeddingDim, equal to
    // kMaxChunkFloats).
    if (dim > kMaxChunkFloats) {
      shard_->CountRejected(kReasonOversize);
      return Rejected(absl::StatusCode::kResourceExhausted, kReasonOversize,
                      absl::StrCat("rows of ", tensor, " (", dim,
                                   " floats) exceed the largest chunk of ",
                                   kMaxChunkFloats, " floats"));
    }
    const int64_t rows_per_chunk = std::max<int64_t>(1, max_chunk_floats / dim);
    bool first = true;
    auto send = [&](absl::Span<const uint64_t> chunk_ids,
                    absl::Span<const float> values, int64_t version,
                    bool last) -> absl::Status {
      v1::TensorChunk chunk;
      if (first) *chunk.mutable_spec() = spec;
      first = false;
      chunk.set_part(info->part());
      chunk.set_version(version);
      chunk.mutable_row_ids()->Add(chunk_ids.begin(), chunk_ids.end());
      SetValues(values, &chunk);
      chunk.set_last(last);
      return write(&chunk);
    };
    if (ids.empty()) {
      // Every row held, a batch per chunk in storage order: the shard holds
      // one chunk's rows at a time, never the list of ids (ScanRows says
      // which rows a pull racing pushes sees).
      uint64_t cursor = 0;
      for (;;) {
        auto batch = shard_->ScanRows(tensor, cursor, rows_per_chunk);
        if (!batch.ok()) return batch.status();
        TESSERA_RETURN_IF_ERROR(
            send(batch->ids, batch->values, batch->version, batch->done));
        if (batch->done) return absl::OkStatus();
        cursor = batch->next;
      }
    }
    std::vector<float> values;
    const int64_t num_ids = ids.size();
    int64_t begin = 0;
    do {
      const int64_t end = std::min(num_ids, begin + rows_per_chunk);
      auto id_span = absl::MakeConstSpan(ids.data() + begin, end - begin);
      values.resize(id_span.size() * dim);
      auto version = shard_->PullRows(tensor, id_span, absl::MakeSpan(values));
      if (!version.ok()) return version.status();
      TESSERA_RETURN_IF_ERROR(send(id_span, values, *version, end == num_ids));
      begin = end;
    } while (begin < num_ids);
    return absl::OkStatus();
  }

  // Dense: one consistent copy of the part (one version), then chunks.
  const int64_t row_size = RowSize(spec);
  std::vector<float> values((info->row_end() - info->row_begin()) * row_size);
  auto version =
      shard_->PullDense(tensor, info->row_begin(), absl::MakeSpan(values));
  if (!version.ok()) return version.status();
  int64_t offset = 0;
  do {
    const int64_t n =
        std::min<int64_t>(max_chunk_floats, values.size() - offset);
    v1::TensorChunk chunk;
    if (offset == 0) *chunk.mutable_spec() = spec;
    chunk.set_part(info->part());
    chunk.set_version(*version);
    chunk.set_part_row_begin(info->row_begin());
    chunk.set_part_row_end(info->row_end());
    chunk.set_offset(offset);
    SetValues(absl::MakeConstSpan(values.data() + offset, n), &chunk);
    chunk.set_last(offset + n == static_cast<int64_t>(values.size()));
    absl::Status written = write(&chunk);
    if (!written.ok()) return written;
    offset += n;
  } while (offset < static_cast<int64_t>(values.size()));
  return absl::OkStatus();
}

grpc::Status ParameterServerService::PullTensor(
    grpc::ServerContext* context, const v1::PullTensorRequest* request,
    grpc::ServerWriter<v1::TensorChunk>* writer) {
  CallScope call(shard_, "PullTensor", 0);
  absl::Status serving = shard_->CheckServing(false);
  if (!serving.ok()) {
    shard_->CountRejected(RejectReasonOf(serving));
    return call.Finish(serving);
  }
  if (request->row_ids_size() > shard_->options().max_ids_per_request) {
    shard_->CountRejected(kReasonOversize);
    return call.Finish(
        Rejected(absl::StatusCode::kInvalidArgument, kReasonOversize,
                 absl::StrCat("PullTensor of ", request->row_ids_size(),
                              " row ids exceeds --max_ids_per_request=",
                              shard_->options().max_ids_per_request)));
  }
  int64_t chunk = request->max_chunk_floats();
  if (chunk <= 0) chunk = kDefaultChunkFloats;
  chunk = std::min(chunk, kMaxChunkFloats);
  return call.Finish(StreamTensor(context, request->tensor_name(),
                                  request->row_ids(), chunk, writer,
                                  call.bytes_out()));
}

grpc::Status ParameterServerService::PullModel(
    grpc::ServerContext* context, const v1::PullModelRequest* request,
    grpc::ServerWriter<v1::TensorChunk>* writer) {
  CallScope call(shard_, "PullModel", 0);
  absl::Status serving = shard_->CheckServing(false);
  if (!serving.ok()) {
    shard_->CountRejected(RejectReasonOf(serving));
    return call.Finish(serving);
  }
  int64_t chunk = request->max_chunk_floats();
  if (chunk <= 0) chunk = kDefaultChunkFloats;
  chunk = std::min(chunk, kMaxChunkFloats);
  const google::protobuf::RepeatedField<uint64_t> all_rows;
  for (const auto& part : shard_->store()->List()) {
    absl::Status streamed = StreamTensor(context, part.spec().name(), all_rows,
                                         chunk, writer, call.bytes_out());
    if (!streamed.ok()) return call.Finish(streamed);
  }
  return call.Finish(absl::OkStatus());
}

grpc::Status ParameterServerService::PushGradient(
    grpc::ServerContext*, const v1::PushGradientRequest* request,
    v1::PushGradientResponse* response) {
  const int64_t bytes = request->ByteSizeLong();
  CallScope call(shard_, "PushGradient", bytes);
  if (bytes > shard_->options().max_message_bytes) {
    shard_->CountRejected(kReasonOversize);
    return call.Finish(absl::ResourceExhaustedError(
        absl::StrCat("push of ", bytes, " bytes exceeds --max_message_bytes=",
                     shard_->options().max_message_bytes)));
  }
  const std::string& raw = request->values();
  if (raw.size() % sizeof(float) != 0) {
    shard_->CountRejected(kReasonMalformed);
    return call.Finish(absl::InvalidArgumentError(absl::StrCat(
        "values of ", raw.size(), " bytes are not whole float32s")));
  }
  // Copy into aligned storage: a bytes field carries no alignment promise.
  std::vector<float> grad(raw.size() / sizeof(float));
  // memcpy from or to null is undefined even for 0 bytes (an empty push).
  if (!raw.empty()) std::memcpy(grad.data(), raw.data(), raw.size());
  absl::StatusOr<PushResult> result;
  if (request->row_ids_size() > 0) {
    result = shard_->PushRows(
        request->tensor_name(),
        absl::MakeConstSpan(request->row_ids().data(), request->row_ids_size()),
        grad);
  } else {
    result =
        shard_->PushDense(request->tensor_name(), request->row_begin(), grad);
  }
  if (!result.ok()) return call.Finish(result.status());
  response->set_version(result->version);
  response->set_skipped(result->skipped);
  return call.Finish(absl::OkStatus());
}

grpc::Status ParameterServerService::InitializeTensor(
    grpc::ServerContext*, const v1::InitializeTensorRequest* request,
    v1::InitializeTensorResponse* response) {
  const int64_t bytes = request->ByteSizeLong();
  CallScope call(shard_, "InitializeTensor", bytes);
  if (bytes > shard_->options().max_message_bytes) {
    shard_->CountRejected(kReasonOversize);
    return call.Finish(
        Rejected(absl::StatusCode::kResourceExhausted, kReasonOversize,
                 absl::StrCat("InitializeTensor of ", bytes,
                              " bytes exceeds --max_message_bytes=",
                              shard_->options().max_message_bytes)));
  }
  const std::string& raw = request->values();
  if (raw.size() % sizeof(float) != 0) {
    shard_->CountRejected(kReasonMalformed);
    return call.Finish(Rejected(absl::StatusCode::kInvalidArgument,
                                kReasonMalformed,
                                absl::StrCat("values of ", raw.size(),
                                             " bytes are not whole float32s")));
  }
  // Aligned copy: a bytes field carries no alignment promise.
  std::vector<float> values(raw.size() / sizeof(float));
  if (!raw.empty()) std::memcpy(values.data(), raw.data(), raw.size());
  auto result = shard_->InitializeTensor(request->tensor_name(),
                                         request->row_begin(), values);
  if (!result.ok()) return call.Finish(result.status());
  response->set_applied(result->applied);
  response->set_version(result->version);
  return call.Finish(absl::OkStatus());
}

grpc::Status ParameterServerService::GetShardInfo(
    grpc::ServerContext*, const v1::GetShardInfoRequest*,
    v1::ShardInfo* response) {
  CallScope call(shard_, "GetShardInfo", 0);
  *response = shard_->Info();
  return call.Finish(absl::OkStatus());
}

}  // namespace tessera
