#include "tools/pull_to_file.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/client_context.h"
#include "ps/client/channel.h"
#include "ps/common/checked_math.h"
#include "ps/common/grpc_status.h"
#include "ps/common/status_macros.h"
#include "ps/spec/placement.h"
#include "tessera/v1/ps.grpc.pb.h"

namespace tessera {
namespace {

struct PartRef {
  int shard = 0;
  v1::TensorPartInfo info;
};

struct Planned {
  v1::TensorSpec spec;
  std::vector<PartRef> parts;  // dense: by row_begin; tables: by shard
  int64_t rows = 0;            // unbounded tables: the rows announced
  int64_t version = 0;
};

// A temporary file of int64s, unlinked at once (it vanishes with the
// process), for the ids of an unbounded table.
class Spool {
 public:
  ~Spool() {
    if (file_ != nullptr) std::fclose(file_);
  }
  absl::Status Open(const std::string& beside) {
    std::string name = beside + ".ids-XXXXXX";
    const int fd = mkstemp(name.data());
    if (fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot create a temporary file beside ", beside, ": ",
                       std::strerror(errno)));
    }
    unlink(name.c_str());
    file_ = fdopen(fd, "w+b");
    if (file_ == nullptr) {
      close(fd);
      return absl::UnavailableError("fdopen of the ids' temporary file");
    }
    return absl::OkStatus();
  }
  absl::Status Write(const int64_t* v, size_t n) {
    if (n > 0 && std::fwrite(v, sizeof(int64_t), n, file_) != n) {
      return absl::UnavailableError("writing the ids' temporary file");
    }
    return absl::OkStatus();
  }
  // Appends `n` spooled ids to `writer`, a block at a time.
  absl::Status CopyTo(ModelFileWriter* writer, int64_t n) {
    if (std::fflush(file_) != 0 || std::fseek(file_, 0, SEEK_SET) != 0) {
      return absl::UnavailableError("rewinding the ids' temporary file");
    }
    std::vector<int64_t> block(1 << 16);
    while (n > 0) {
      const size_t want = std::min<int64_t>(n, block.size());
      if (std::fread(block.data(), sizeof(int64_t), want, file_) != want) {
        return absl::UnavailableError("reading the ids' temporary file");
      }
      TESSERA_RETURN_IF_ERROR(
          writer->Append(absl::MakeConstSpan(block.data(), want)));
      n -= want;
    }
    return absl::OkStatus();
  }

 private:
  std::FILE* file_ = nullptr;
};

class Puller {
 public:
  Puller(const std::vector<std::string>& shards,
         const PullToFileOptions& options)
      : shards_(shards), options_(options) {
    for (const auto& address : shards_) {
      stubs_.push_back(v1::ParameterServer::NewStub(NewChannel(address)));
    }
  }

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoMilliseconds(options_.timeout));
    return context;
  }

  absl::Status ShardError(int s, const grpc::Status& status,
                          absl::string_view what) const {
    absl::Status error = FromGrpcStatus(status);
    return absl::Status(error.code(),
                        absl::StrCat(what, " on shard ", s, " at ", shards_[s],
                                     ": ", error.message()));
  }
  absl::Status Malformed(int s, const std::string& tensor,
                         absl::string_view why) const {
    return absl::DataLossError(absl::StrCat("shard ", s, " at ", shards_[s],
                                            " sent a malformed chunk of ",
                                            tensor, ": ", why));
  }

  // Step 1: every shard's parts, checked, by tensor name.
  absl::StatusOr<std::map<std::string, Planned>> Plan() {
    std::map<std::string, Planned> plan;
    for (int s = 0; s < static_cast<int>(shards_.size()); ++s) {
      v1::ShardInfo shard_info;
      auto info_context = Context();
      grpc::Status status = stubs_[s]->GetShardInfo(
          info_context.get(), v1::GetShardInfoRequest(), &shard_info);
      if (!status.ok()) return ShardError(s, status, "GetShardInfo");
      if (shard_info.placement().num_shards() !=
              static_cast<int>(shards_.size()) ||
          shard_info.shard_index() != s) {
        return absl::FailedPreconditionError(
            absl::StrCat("--shards names ", shards_.size(), " shards but ",
                         shards_[s], " is shard ", shard_info.shard_index(),
                         " of ", shard_info.placement().num_shards(),
                         "; give every shard, in shard order"));
      }
      v1::ListTensorsResponse list;
      auto context = Context();
      status = stubs_[s]->ListTensors(context.get(), v1::ListTensorsRequest(),
                                      &list);
      if (!status.ok()) return ShardError(s, status, "ListTensors");
      for (const auto& part : list.parts()) {
        // A shard is a peer: its spec is checked like a request's.
        absl::Status valid = ValidateTensorSpec(part.spec());
        Planned& p = plan[part.spec().name()];
        if (!valid.ok() || (!p.parts.empty() &&
                            !google::protobuf::util::MessageDifferencer::Equals(
                                p.spec, part.spec()))) {
          return absl::DataLossError(
              absl::StrCat("shard ", s, " at ", shards_[s],
                           " sent a bad spec of ", part.spec().name(), ": ",
                           valid.ok() ? "it disagrees with another shard's"
                                      : valid.message()));
        }
        p.spec = part.spec();
        p.parts.push_back({s, part});
        if (part.num_rows() < 0 ||
            !CheckedAdd(p.rows, part.num_rows(), &p.rows)) {
          return absl::DataLossError(absl::StrCat("shard ", s, " reports ",
                                                  part.num_rows(), " rows of ",
                                                  part.spec().name()));
        }
      }
    }
    for (auto& [name, p] : plan) {
      if (p.spec.kind() == v1::TensorSpec::EMBEDDING) continue;
      std::sort(p.parts.begin(), p.parts.end(),
                [](const PartRef& a, const PartRef& b) {
                  return a.info.row_begin() < b.info.row_begin();
                });
      int64_t row = 0;
      for (const PartRef& part : p.parts) {
        if (part.info.row_begin() != row) break;
        row = part.info.row_end();
      }
      if (row != NumRows(p.spec)) {
        return absl::DataLossError(absl::StrCat(
            "tensor ", name, " is incomplete: the shards hold rows [0, ", row,
            ") of ", NumRows(p.spec),
            " contiguously; is a shard missing from "
            "--shards?"));
      }
    }
    return plan;
  }

  // Reads one PullTensor stream, handing each chunk's checked floats (and
  // ids) to `take`.
  template <typename Take>
  absl::Status Stream(int s, const v1::PullTensorRequest& request, Planned* p,
                      Take take) {
    auto context = Context();
    auto reader = stubs_[s]->PullTensor(context.get(), request);
    v1::TensorChunk chunk;
    std::vector<float> floats;
    absl::Status taken;
    while (taken.ok() && reader->Read(&chunk)) {
      const std::string& bytes = chunk.values();
      if (bytes.size() % sizeof(float) != 0) {
        taken = Malformed(s, p->spec.name(), "values are not whole float32s");
        break;
      }
      // Copied out of the bytes field, which has no alignment promise.
      floats.resize(bytes.size() / sizeof(float));
      if (!bytes.empty()) {
        std::memcpy(floats.data(), bytes.data(), bytes.size());
      }
      p->version = std::max(p->version, chunk.version());
      taken = take(chunk, absl::MakeConstSpan(floats));
    }
    if (!taken.ok()) {
      context->TryCancel();
      reader->Finish();
      return taken;
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      return ShardError(s, status,
                        absl::StrCat("pulling ", request.tensor_name()));
    }
    return absl::OkStatus();
  }

  absl::Status Dense(Planned* p, ModelFileWriter* writer) {
    const int64_t row_size = RowSize(p->spec);
    for (const PartRef& part : p->parts) {
      const int64_t total =
          (part.info.row_end() - part.info.row_begin()) * row_size;
      int64_t offset = 0;
      v1::PullTensorRequest request;
      request.set_tensor_name(p->spec.name());
      request.set_max_chunk_floats(options_.max_chunk_floats);
      TESSERA_RETURN_IF_ERROR(
          Stream(part.shard, request, p,
                 [&](const v1::TensorChunk& chunk,
                     absl::Span<const float> values) -> absl::Status {
                   if (chunk.part_row_begin() != part.info.row_begin() ||
                       chunk.offset() != offset ||
                       !RangeWithin(offset, values.size(), 0, total)) {
                     return Malformed(
                         part.shard, p->spec.name(),
                         absl::StrCat("values at offset ", chunk.offset(),
                                      " of part row ", chunk.part_row_begin()));
                   }
                   offset += values.size();
                   return writer->Append(values);
                 }));
      if (offset != total) {
        return absl::DataLossError(
            absl::StrCat("shard ", part.shard, " sent ", offset, " of ", total,
                         " values of its part of ", p->spec.name()));
      }
    }
    return absl::OkStatus();
  }

  absl::Status BoundedTable(Planned* p, ModelFileWriter* writer) {
    const int64_t rows = p->spec.shape(0);
    const int64_t dim = p->spec.shape(1);
    const int num_shards = shards_.size();
    const int64_t batch = std::max<int64_t>(1, options_.bounded_batch_rows);
    std::vector<float> values;
    std::vector<std::vector<int64_t>> slots(num_shards);  // row in the batch
    for (int64_t begin = 0; begin < rows; begin += batch) {
      const int64_t n = std::min(batch, rows - begin);
      values.assign(n * dim, 0.0f);
      std::vector<v1::PullTensorRequest> requests(num_shards);
      for (int s = 0; s < num_shards; ++s) {
        requests[s].set_tensor_name(p->spec.name());
        requests[s].set_max_chunk_floats(options_.max_chunk_floats);
        slots[s].clear();
      }
      for (int64_t i = 0; i < n; ++i) {
        const int s = ShardOfRow(begin + i, num_shards);
        requests[s].add_row_ids(begin + i);
        slots[s].push_back(i);
      }
      for (int s = 0; s < num_shards; ++s) {
        if (slots[s].empty()) continue;
        size_t next = 0;
        TESSERA_RETURN_IF_ERROR(Stream(
            s, requests[s], p,
            [&](const v1::TensorChunk& chunk,
                absl::Span<const float> got) -> absl::Status {
              const size_t k = chunk.row_ids_size();
              if (got.size() != k * dim || k > slots[s].size() - next) {
                return Malformed(
                    s, p->spec.name(),
                    absl::StrCat(k, " rows in ", got.size(), " floats"));
              }
              for (size_t j = 0; j < k; ++j, ++next) {
                if (chunk.row_ids(j) != requests[s].row_ids(next)) {
                  return Malformed(
                      s, p->spec.name(),
                      absl::StrCat("row ", chunk.row_ids(j), " where row ",
                                   requests[s].row_ids(next),
                                   " was asked for"));
                }
                std::copy_n(got.data() + j * dim, dim,
                            values.data() + slots[s][next] * dim);
              }
              return absl::OkStatus();
            }));
        if (next != slots[s].size()) {
          return Malformed(
              s, p->spec.name(),
              absl::StrCat(next, " of ", slots[s].size(), " rows asked for"));
        }
      }
      TESSERA_RETURN_IF_ERROR(writer->Append(absl::MakeConstSpan(values)));
    }
    return absl::OkStatus();
  }

  absl::Status UnboundedTable(Planned* p, const std::string& path,
                              ModelFileWriter* writer) {
    const int64_t dim = p->spec.shape(1);
    Spool spool;
    TESSERA_RETURN_IF_ERROR(spool.Open(path));
    std::vector<int64_t> ids;
    for (const PartRef& part : p->parts) {
      const int64_t announced = part.info.num_rows();
      int64_t got = 0;
      v1::PullTensorRequest request;
      request.set_tensor_name(p->spec.name());
      request.set_max_chunk_floats(options_.max_chunk_floats);
      TESSERA_RETURN_IF_ERROR(Stream(
          part.shard, request, p,
          [&](const v1::TensorChunk& chunk,
              absl::Span<const float> values) -> absl::Status {
            const int64_t k = chunk.row_ids_size();
            if (static_cast<int64_t>(values.size()) != k * dim) {
              return Malformed(
                  part.shard, p->spec.name(),
                  absl::StrCat(k, " rows in ", values.size(), " floats"));
            }
            // Rows beyond the count announced were created during the
            // pull: left out, so that the shapes written stay true.
            const int64_t take = std::min(k, announced - got);
            if (take <= 0) return absl::OkStatus();
            ids.assign(chunk.row_ids().begin(), chunk.row_ids().begin() + take);
            got += take;
            TESSERA_RETURN_IF_ERROR(spool.Write(ids.data(), ids.size()));
            return writer->Append(values.subspan(0, take * dim));
          }));
      if (got < announced) {
        return absl::AbortedError(absl::StrCat(
            "shard ", part.shard, " at ", shards_[part.shard], " streamed ",
            got, " rows of ", p->spec.name(), " but held ", announced,
            " when the pull began (rows freed meanwhile); pull again"));
      }
    }
    return spool.CopyTo(writer, p->rows);
  }

 private:
  const std::vector<std::string>& shards_;
  const PullToFileOptions& options_;
  std::vector<std::unique_ptr<v1::ParameterServer::Stub>> stubs_;
};

}  // namespace

absl::StatusOr<std::vector<PulledTensorInfo>> PullModelToFile(
    const std::vector<std::string>& shards, const std::string& path,
    ModelFileFormat format, const PullToFileOptions& options) {
  Puller puller(shards, options);
  TESSERA_ASSIGN_OR_RETURN(auto plan, puller.Plan());
  std::vector<ModelTensorInfo> infos;
  for (const auto& [name, p] : plan) {
    ModelTensorInfo info;
    info.name = name;
    if (p.spec.kind() == v1::TensorSpec::EMBEDDING && p.spec.shape(0) == 0) {
      info.shape = {p.rows, p.spec.shape(1)};
      infos.push_back(info);
      info.name = name + ".ids";
      info.dtype = ModelDType::kInt64;
      info.shape = {p.rows};
    } else {
      info.shape.assign(p.spec.shape().begin(), p.spec.shape().end());
    }
    infos.push_back(std::move(info));
  }
  TESSERA_ASSIGN_OR_RETURN(
      auto writer, NewModelFileWriter(path, format, infos, options.writer));
  std::vector<PulledTensorInfo> out;
  for (auto& [name, p] : plan) {
    if (p.spec.kind() != v1::TensorSpec::EMBEDDING) {
      TESSERA_RETURN_IF_ERROR(puller.Dense(&p, writer.get()));
    } else if (p.spec.shape(0) > 0) {
      TESSERA_RETURN_IF_ERROR(puller.BoundedTable(&p, writer.get()));
    } else {
      TESSERA_RETURN_IF_ERROR(puller.UnboundedTable(&p, path, writer.get()));
    }
    PulledTensorInfo info;
    info.name = name;
    info.version = p.version;
    if (p.spec.kind() == v1::TensorSpec::EMBEDDING && p.spec.shape(0) == 0) {
      info.shape = {p.rows, p.spec.shape(1)};
      out.push_back(info);
      info.name = name + ".ids";
      info.shape = {p.rows};
    } else {
      info.shape.assign(p.spec.shape().begin(), p.spec.shape().end());
    }
    out.push_back(std::move(info));
  }
  TESSERA_RETURN_IF_ERROR(writer->Finish());
  return out;
}

}  // namespace tessera
