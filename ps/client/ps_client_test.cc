// PsClient against fake shards: a gRPC ParameterServer that answers
// GetShardInfo, and a ROUTER socket the test drives by hand, so each failure
// (no answer, UNAVAILABLE, a dropped connection, a late or garbled reply)
// happens exactly when the test says.

#include "ps/client/ps_client.h"

#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "ps/common/metrics/metrics.h"
#include "ps/common/status_matchers.h"
#include "ps/spec/placement.h"
#include "ps/wire/data_wire.h"
#include "ps/wire/zmq_frames.h"
#include "tessera/v1/data.pb.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

v1::TensorSpec Spec() {
  v1::TensorSpec spec;
  spec.set_name("w");
  spec.add_shape(4);
  spec.add_shape(2);
  return spec;
}

// Answers GetShardInfo with `info`; accepts CreateTensors.
class FakeService final : public v1::ParameterServer::Service {
 public:
  explicit FakeService(v1::ShardInfo info) : info_(std::move(info)) {}
  grpc::Status GetShardInfo(grpc::ServerContext*,
                            const v1::GetShardInfoRequest*,
                            v1::ShardInfo* response) override {
    *response = info_;
    return grpc::Status::OK;
  }
  grpc::Status CreateTensors(grpc::ServerContext*,
                             const v1::CreateTensorsRequest*,
                             v1::CreateTensorsResponse*) override {
    return grpc::Status::OK;
  }

 private:
  const v1::ShardInfo info_;
};

// One request as the fake shard's ROUTER received it.
struct Received {
  std::string identity;
  v1::DataHeader header;
  std::vector<std::string> payload;
};

class FakeShard {
 public:
  FakeShard(int index, int num_shards) : context_(1) {
    Open(0);
    v1::ShardInfo info;
    info.set_shard_index(index);
    info.mutable_placement()->set_num_shards(num_shards);
    info.mutable_placement()->set_split_threshold_bytes(1 << 20);
    info.set_data_port(port_);
    service_ = std::make_unique<FakeService>(info);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &grpc_port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
  }
  ~FakeShard() { server_->Shutdown(); }

  std::string address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }
  int data_port() const { return port_; }

  // Closes the data socket, dropping its connections, and binds a new one on
  // the same port: a shard that restarted.
  void Restart() {
    router_.Close();
    // ZeroMQ closes the listener on its I/O thread, a moment later: retry.
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (!Bind(port_).ok() && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_TRUE(router_.valid()) << "port " << port_ << " never came free";
  }

  // The next request, or an error after 20 s.
  absl::StatusOr<Received> Receive() {
    zmq_pollitem_t item = {router_.get(), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 20000) <= 0) {
      return absl::DeadlineExceededError("no request within 20 s");
    }
    std::vector<ZmqFrame> frames;
    auto got = ZmqRecvFrames(router_.get(), &frames, 0, 8);
    if (!got.ok()) return got.status();
    Received r;
    r.identity = std::string(frames[0].view());
    auto header = ParseDataHeader(frames[1].view());
    if (!header.ok()) return header.status();
    r.header = *header;
    for (size_t i = 2; i < frames.size(); ++i) {
      r.payload.emplace_back(frames[i].view());
    }
    return r;
  }

  void Reply(const Received& to, const absl::Status& status,
             std::vector<std::string> payload = {}) {
    v1::DataHeader header;
    header.set_request_id(to.header.request_id());
    SetHeaderStatus(status, &header);
    SendRaw(to.identity, header.SerializeAsString(), std::move(payload));
  }

  void SendRaw(const std::string& identity, const std::string& header,
               std::vector<std::string> payload = {}) {
    std::vector<ZmqFrame> frames;
    frames.push_back(ZmqFrame::Copy(identity));
    frames.push_back(ZmqFrame::Copy(header));
    for (auto& p : payload) frames.push_back(ZmqFrame::Copy(p));
    ASSERT_THAT(ZmqSendFrames(router_.get(), absl::MakeSpan(frames), 0),
                IsOk());
  }

 private:
  void Open(int port) { ASSERT_THAT(Bind(port), IsOk()); }

  absl::Status Bind(int port) {
    auto router = ZmqSocket::Open(context_.get(), ZMQ_ROUTER);
    if (!router.ok()) return router.status();
    absl::Status bound = router->Bind(absl::StrCat("tcp://127.0.0.1:", port));
    if (!bound.ok()) return bound;
    auto actual = router->BoundPort();
    if (!actual.ok()) return actual.status();
    router_ = *std::move(router);
    port_ = *actual;
    return absl::OkStatus();
  }

  ZmqContext context_;
  ZmqSocket router_;
  int port_ = 0;
  int grpc_port_ = 0;
  std::unique_ptr<FakeService> service_;
  std::unique_ptr<grpc::Server> server_;
};

std::string Floats(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(float));
}

double Series(metrics::Registry& registry, const std::string& series) {
  const std::string text = registry.Serialize();
  const size_t at = text.find(series + " ");
  return at == std::string::npos ? -1
                                 : std::stod(text.substr(at + series.size()));
}

class PsClientTest : public ::testing::Test {
 protected:
  void Connect(std::vector<FakeShard*> shards) {
    PsClientOptions options;
    for (FakeShard* s : shards) options.shard_addresses.push_back(s->address());
    options.registry = &registry_;
    options.default_deadline = absl::Seconds(20);
    options.initial_backoff = absl::Milliseconds(1);
    // The fake shards answer frames; shared memory has its own tests in
    // tests/data_plane_test.cc.
    options.shared_memory = false;
    auto client = PsClient::Connect(options);
    ASSERT_THAT(client, IsOk());
    client_ = *std::move(client);
    ASSERT_THAT(client_->RegisterSpecs({Spec()}), IsOk());
  }

  metrics::Registry registry_;
  std::unique_ptr<PsClient> client_;
};

TEST_F(PsClientTest, PullCopiesTheReplyIntoTheCallersBuffer) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> out(4);
  auto pulled = client_->PullDense("w", 1, absl::MakeSpan(out));
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PULL_DENSE);
  EXPECT_EQ(request->header.tensor_name(), "w");
  EXPECT_EQ(request->header.row_begin(), 1);
  EXPECT_EQ(request->header.row_count(), 2);
  EXPECT_EQ(request->header.row_size(), 2);
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2, 3, 4})});
  EXPECT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(out, std::vector<float>({1, 2, 3, 4}));
}

// PullDenseInPlace points into the reply instead of copying it: the values
// outlive the client, a retried piece lands once, and bad calls fail before
// anything is sent.
TEST_F(PsClientTest, PullInPlaceKeepsTheReplysValues) {
  FakeShard shard(0, 1);
  Connect({&shard});
  auto pulled = client_->PullDenseInPlace("w", 1, 4);
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PULL_DENSE);
  EXPECT_EQ(request->header.row_begin(), 1);
  EXPECT_EQ(request->header.row_count(), 2);
  shard.Reply(*request, absl::UnavailableError("loading"));
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2, 3, 4})});
  absl::StatusOr<PulledDense> values = pulled.get();
  ASSERT_THAT(values, IsOk());
  ASSERT_EQ(values->spans().size(), 1u);
  EXPECT_EQ(values->size(), 4u);

  // A reply of the wrong size is an error, not a short span.
  pulled = client_->PullDenseInPlace("w", 0, 8);
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2})});
  EXPECT_THAT(pulled.get(), StatusIs(absl::StatusCode::kInternal));

  EXPECT_THAT(client_->PullDenseInPlace("w", 3, 4).get(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client_->PullDenseInPlace("w", 0, 3).get(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client_->PullDenseInPlace("nope", 0, 2).get(),
              StatusIs(absl::StatusCode::kNotFound));

  client_.reset();  // The frames outlive the client and its context.
  std::vector<float> out(4);
  ASSERT_THAT(values->CopyTo(absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out, std::vector<float>({1, 2, 3, 4}));
  EXPECT_EQ(
      std::vector<float>(values->spans()[0].begin(), values->spans()[0].end()),
      out);
  PulledDense moved = *std::move(values);
  EXPECT_EQ(moved.size(), 4u);
}

// With a DenseHistory the client's thread writes the pulled values into
// `previous` and, extrapolating, pulled + (pulled - previous) into `out`.
TEST_F(PsClientTest, PullWithAHistoryKeepsItAndExtrapolates) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> out(4), previous = {0, 2, 2, 5};
  DenseHistory history;
  history.previous = absl::MakeSpan(previous);
  history.extrapolate = true;
  auto pulled = client_->PullDense("w", 1, absl::MakeSpan(out), history);
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2, 3, 4})});
  EXPECT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(out, std::vector<float>({2, 2, 4, 3}));
  EXPECT_EQ(previous, std::vector<float>({1, 2, 3, 4}));

  history.extrapolate = false;
  pulled = client_->PullDense("w", 1, absl::MakeSpan(out), history);
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.Reply(*request, absl::OkStatus(), {Floats({5, 6, 7, 8})});
  EXPECT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(out, std::vector<float>({5, 6, 7, 8}));
  EXPECT_EQ(previous, out);

  // A history of another size is refused before anything is sent.
  std::vector<float> short_history(3);
  history.previous = absl::MakeSpan(short_history);
  EXPECT_THAT(client_->PullDense("w", 1, absl::MakeSpan(out), history).get(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(PsClientTest, UnavailableIsRetriedUntilItSucceeds) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> grad = {1, 2};
  auto pushed = client_->PushDense("w", 3, absl::MakeConstSpan(grad));
  uint64_t last_id = 0;
  for (int i = 0; i < 3; ++i) {
    auto request = shard.Receive();
    ASSERT_THAT(request, IsOk());
    EXPECT_NE(request->header.request_id(), last_id);  // A fresh id each time.
    last_id = request->header.request_id();
    ASSERT_EQ(request->payload.size(), 1u);
    EXPECT_EQ(request->payload[0], Floats(grad));
    shard.Reply(*request,
                i < 2 ? absl::UnavailableError("loading") : absl::OkStatus());
  }
  EXPECT_THAT(pushed.get(), IsOk());
  EXPECT_EQ(Series(registry_, "tessera_client_retries_total{shard=\"0\"}"), 2);
}

TEST_F(PsClientTest, ARequestLostWithItsConnectionIsResentAfterReconnecting) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> grad = {1, 2, 3, 4};
  auto pushed = client_->PushDense("w", 0, absl::MakeConstSpan(grad));
  auto first = shard.Receive();
  ASSERT_THAT(first, IsOk());
  shard.Restart();  // Read, never answered: the "shard" died with it.
  auto again = shard.Receive();
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->header.tensor_name(), "w");
  EXPECT_EQ(again->payload, first->payload);
  shard.Reply(*again, absl::OkStatus());
  EXPECT_THAT(pushed.get(), IsOk());
  EXPECT_EQ(Series(registry_, "tessera_client_retries_total{shard=\"0\"}"), 1);
}

TEST_F(PsClientTest, SilenceEndsInADeadlineErrorNamingTheShard) {
  FakeShard zero(0, 2), one(1, 2);
  Connect({&zero, &one});
  std::vector<float> out(8);
  CallOptions options;
  options.deadline = absl::Milliseconds(300);
  // The spec's 32 bytes stay whole on one shard; the message says which.
  auto pulled = client_->PullDense("w", 0, absl::MakeSpan(out), options);
  const absl::Status status = pulled.get();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kDeadlineExceeded,
                               HasSubstr("did not answer within 300ms")));
  const bool on_one = status.message().find("shard 1 at") != std::string::npos;
  FakeShard& silent = on_one ? one : zero;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("127.0.0.1:", silent.data_port())));
  EXPECT_EQ(
      Series(registry_, absl::StrCat("tessera_client_timeouts_total{shard=\"",
                                     on_one ? 1 : 0, "\"}")),
      1);
  // The request arrived; answering it now changes nothing.
  auto late = silent.Receive();
  ASSERT_THAT(late, IsOk());
  silent.Reply(*late, absl::OkStatus(), {Floats(std::vector<float>(8, 9))});
  EXPECT_EQ(out, std::vector<float>(8, 0));
}

TEST_F(PsClientTest, GarbledAndUnknownRepliesAreIgnored) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> out(2);
  auto pulled = client_->PullDense("w", 0, absl::MakeSpan(out));
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.SendRaw(request->identity, std::string(11, '\xff'));
  v1::DataHeader stranger;
  stranger.set_request_id(request->header.request_id() + 1000);
  shard.SendRaw(request->identity, stranger.SerializeAsString(),
                {Floats({7, 7})});
  shard.Reply(*request, absl::OkStatus(), {Floats({5, 6})});
  EXPECT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(out, std::vector<float>({5, 6}));
}

TEST_F(PsClientTest, ShardErrorsAreReturnedWithTheShardNamed) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> grad = {1, 2};
  auto pushed = client_->PushDense("w", 0, absl::MakeConstSpan(grad));
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.Reply(*request, absl::InvalidArgumentError("NaN in the gradient"));
  EXPECT_THAT(pushed.get(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat(
                           "shard 0 at 127.0.0.1:", shard.data_port(),
                           ": NaN in the gradient"))));
}

TEST_F(PsClientTest, RowsAreDeduplicatedAndScatteredBackInOrder) {
  FakeShard shard(0, 1);
  PsClientOptions options;
  options.shard_addresses = {shard.address()};
  options.shared_memory = false;
  auto client = PsClient::Connect(options);
  ASSERT_THAT(client, IsOk());
  v1::TensorSpec table;
  table.set_name("emb");
  table.set_kind(v1::TensorSpec::EMBEDDING);
  table.add_shape(0);
  table.add_shape(2);
  ASSERT_THAT((*client)->RegisterSpecs({table}), IsOk());

  const std::vector<uint64_t> ids = {7, 3, 7, 9, 3};
  std::vector<float> out(ids.size() * 2);
  auto pulled = (*client)->PullRows("emb", ids, absl::MakeSpan(out));
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  ASSERT_EQ(request->payload.size(), 1u);
  std::vector<uint64_t> sent(request->payload[0].size() / 8);
  std::memcpy(sent.data(), request->payload[0].data(),
              request->payload[0].size());
  EXPECT_EQ(sent, std::vector<uint64_t>({7, 3, 9}));
  shard.Reply(*request, absl::OkStatus(), {Floats({70, 71, 30, 31, 90, 91})});
  ASSERT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(out, std::vector<float>({70, 71, 30, 31, 70, 71, 90, 91, 30, 31}));

  const std::vector<float> grad = {1, 1, 2, 2, 3, 3, 4, 4, 5, 5};
  auto pushed = (*client)->PushRows("emb", ids, grad);
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  ASSERT_EQ(request->payload.size(), 2u);
  EXPECT_EQ(request->header.row_count(), 3);
  EXPECT_EQ(request->payload[1], Floats({4, 4, 7, 7, 4, 4}));  // 7, 3, 9
  shard.Reply(*request, absl::OkStatus());
  EXPECT_THAT(pushed.get(), IsOk());
}

std::vector<uint64_t> Ids(const std::string& frame) {
  std::vector<uint64_t> ids(frame.size() / 8);
  std::memcpy(ids.data(), frame.data(), frame.size());
  return ids;
}

v1::TensorSpec TableSpec(const std::string& name, int64_t dim) {
  v1::TensorSpec table;
  table.set_name(name);
  table.set_kind(v1::TensorSpec::EMBEDDING);
  table.add_shape(0);
  table.add_shape(dim);
  return table;
}

TEST_F(PsClientTest, TablesGoToEachShardInOneRequest) {
  FakeShard zero(0, 2), one(1, 2);
  Connect({&zero, &one});
  ASSERT_THAT(client_->RegisterSpecs({TableSpec("a", 1), TableSpec("b", 2)}),
              IsOk());
  // Ids of a and b on each shard: 2 ids of each on both.
  std::vector<uint64_t> on[2];
  for (uint64_t id = 0; on[0].size() < 2 || on[1].size() < 2; ++id) {
    auto& list = on[ShardOfRow(id, 2)];
    if (list.size() < 2) list.push_back(id);
  }
  const std::vector<uint64_t> a_ids = {on[0][0], on[1][0], on[0][0]};
  const std::vector<uint64_t> b_ids = {on[1][1], on[0][1]};
  std::vector<float> a_out(3), b_out(4);
  // Every entry is checked before anything is sent, even one with no ids.
  EXPECT_THAT(client_
                  ->PullTables({{"a", a_ids, absl::MakeSpan(a_out)},
                                {"unknown", {}, {}}})
                  .get(),
              StatusIs(absl::StatusCode::kNotFound));
  auto pulled = client_->PullTables({{"a", a_ids, absl::MakeSpan(a_out)},
                                     {"b", b_ids, absl::MakeSpan(b_out)}});
  for (FakeShard* shard : {&zero, &one}) {
    auto request = shard->Receive();
    ASSERT_THAT(request, IsOk());
    const int s = shard == &zero ? 0 : 1;
    EXPECT_EQ(request->header.op(), v1::DataHeader::PULL_TABLES);
    ASSERT_EQ(request->header.tables_size(), 2);
    EXPECT_EQ(request->header.tables(0).tensor_name(), "a");
    EXPECT_EQ(request->header.tables(0).row_count(), 1);  // Sent once.
    EXPECT_EQ(request->header.tables(0).row_size(), 1);
    EXPECT_EQ(request->header.tables(1).tensor_name(), "b");
    EXPECT_EQ(request->header.tables(1).row_size(), 2);
    ASSERT_EQ(request->payload.size(), 1u);
    EXPECT_EQ(Ids(request->payload[0]),
              std::vector<uint64_t>({on[s][0], on[s][1]}));
    // a's row, then b's: 10 * shard + 1, then (10 * shard + 2, + 3).
    const float base = 10 * s;
    shard->Reply(*request, absl::OkStatus(),
                 {Floats({base + 1, base + 2, base + 3})});
  }
  ASSERT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(a_out, std::vector<float>({1, 11, 1}));
  EXPECT_EQ(b_out, std::vector<float>({12, 13, 2, 3}));

  // A push sums repeated ids per table; each shard gets its runs.
  const std::vector<float> a_grad = {1, 2, 4}, b_grad = {5, 6, 7, 8};
  auto pushed =
      client_->PushTables({{"a", a_ids, a_grad}, {"b", b_ids, b_grad}});
  for (FakeShard* shard : {&zero, &one}) {
    auto request = shard->Receive();
    ASSERT_THAT(request, IsOk());
    EXPECT_EQ(request->header.op(), v1::DataHeader::PUSH_TABLES);
    ASSERT_EQ(request->payload.size(), 2u);
    EXPECT_EQ(request->payload[1],
              shard == &zero ? Floats({1 + 4, 7, 8}) : Floats({2, 5, 6}));
    shard->Reply(*request, absl::OkStatus());
  }
  EXPECT_THAT(pushed.get(), IsOk());
}

v1::TensorSpec DenseSpec(const std::string& name, int64_t rows, int64_t cols) {
  v1::TensorSpec spec;
  spec.set_name(name);
  spec.add_shape(rows);
  spec.add_shape(cols);
  return spec;
}

TEST_F(PsClientTest, DenseBatchesGoToTheShardInOneRequest) {
  FakeShard shard(0, 1);
  Connect({&shard});
  ASSERT_THAT(client_->RegisterSpecs({DenseSpec("b", 3, 1)}), IsOk());
  // Rows 1-2 of w with a history, all of b without.
  std::vector<float> w_out(4), b_out(3), previous = {0, 2, 2, 5};
  DenseHistory history{absl::MakeSpan(previous), /*extrapolate=*/true};
  auto pulled =
      client_->PullDenseBatch({{"w", 1, absl::MakeSpan(w_out), history},
                               {"b", 0, absl::MakeSpan(b_out), {}}});
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PULL_DENSE_BATCH);
  EXPECT_TRUE(request->header.tensor_name().empty());
  ASSERT_EQ(request->header.dense_ranges_size(), 2);
  EXPECT_EQ(request->header.dense_ranges(0).tensor_name(), "w");
  EXPECT_EQ(request->header.dense_ranges(0).row_begin(), 1);
  EXPECT_EQ(request->header.dense_ranges(0).row_count(), 2);
  EXPECT_EQ(request->header.dense_ranges(0).row_size(), 2);
  EXPECT_EQ(request->header.dense_ranges(1).tensor_name(), "b");
  EXPECT_EQ(request->header.dense_ranges(1).row_count(), 3);
  EXPECT_TRUE(request->payload.empty());
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2, 3, 4, 7, 8, 9})});
  ASSERT_THAT(pulled.get(), IsOk());
  EXPECT_EQ(w_out, std::vector<float>({2, 2, 4, 3}));  // 2 x pulled - previous
  EXPECT_EQ(previous, std::vector<float>({1, 2, 3, 4}));
  EXPECT_EQ(b_out, std::vector<float>({7, 8, 9}));

  // A reply of the wrong size fails the call and writes nothing.
  std::fill(b_out.begin(), b_out.end(), 0);
  pulled = client_->PullDenseBatch({{"w", 1, absl::MakeSpan(w_out), {}},
                                    {"b", 0, absl::MakeSpan(b_out), {}}});
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2, 3, 4, 7, 8})});
  EXPECT_THAT(pulled.get(), StatusIs(absl::StatusCode::kInternal));
  EXPECT_EQ(b_out, std::vector<float>({0, 0, 0}));

  // A push's ranges travel in one values frame, in order.
  auto w_grad = std::make_shared<const std::vector<float>>(
      std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8});
  auto b_grad =
      std::make_shared<const std::vector<float>>(std::vector<float>{9, 10});
  auto pushed = client_->PushDenseBatch(
      {{"b", 1, b_grad, *b_grad}, {"w", 0, w_grad, *w_grad}});
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PUSH_DENSE_BATCH);
  ASSERT_EQ(request->header.dense_ranges_size(), 2);
  EXPECT_EQ(request->header.dense_ranges(0).tensor_name(), "b");
  EXPECT_EQ(request->header.dense_ranges(0).row_begin(), 1);
  ASSERT_EQ(request->payload.size(), 1u);
  EXPECT_EQ(request->payload[0], Floats({9, 10, 1, 2, 3, 4, 5, 6, 7, 8}));
  // UNAVAILABLE: the whole batch is sent again.
  shard.Reply(*request, absl::UnavailableError("loading"));
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PUSH_DENSE_BATCH);
  ASSERT_EQ(request->payload.size(), 1u);
  EXPECT_EQ(request->payload[0], Floats({9, 10, 1, 2, 3, 4, 5, 6, 7, 8}));
  shard.Reply(*request, absl::OkStatus());
  EXPECT_THAT(pushed.get(), IsOk());

  // A batch of one range is that range's own request.
  pushed = client_->PushDenseBatch({{"b", 1, b_grad, *b_grad}});
  request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PUSH_DENSE);
  EXPECT_EQ(request->header.tensor_name(), "b");
  shard.Reply(*request, absl::OkStatus());
  EXPECT_THAT(pushed.get(), IsOk());
  EXPECT_THAT(client_->PushDenseBatch({}).get(), IsOk());
}

TEST_F(PsClientTest, BadDenseBatchesFailBeforeAnythingIsSent) {
  FakeShard shard(0, 1);
  Connect({&shard});
  ASSERT_THAT(client_->RegisterSpecs({DenseSpec("b", 3, 1), TableSpec("e", 2)}),
              IsOk());
  std::vector<float> w_out(8), b_out(3), odd(3), short_history(2);
  const auto invalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(client_
                  ->PullDenseBatch({{"w", 0, absl::MakeSpan(w_out), {}},
                                    {"w", 0, absl::MakeSpan(w_out), {}}})
                  .get(),
              StatusIs(invalid, HasSubstr("twice")));
  EXPECT_THAT(client_
                  ->PullDenseBatch({{"w", 0, absl::MakeSpan(w_out), {}},
                                    {"x", 0, absl::MakeSpan(b_out), {}}})
                  .get(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(client_
                  ->PullDenseBatch({{"w", 0, absl::MakeSpan(w_out), {}},
                                    {"b", 1, absl::MakeSpan(b_out), {}}})
                  .get(),
              StatusIs(invalid, HasSubstr("outside")));
  EXPECT_THAT(
      client_->PullDenseBatch({{"w", 0, absl::MakeSpan(odd), {}}}).get(),
      StatusIs(invalid));
  EXPECT_THAT(
      client_->PullDenseBatch({{"e", 0, absl::MakeSpan(b_out), {}}}).get(),
      StatusIs(invalid, HasSubstr("embedding")));
  EXPECT_THAT(client_
                  ->PullDenseBatch({{"b",
                                     0,
                                     absl::MakeSpan(b_out),
                                     {absl::MakeSpan(short_history), true}}})
                  .get(),
              StatusIs(invalid, HasSubstr("history")));
  auto grad = std::make_shared<const std::vector<float>>(3, 1.0f);
  EXPECT_THAT(client_->PushDenseBatch({{"b", 0, nullptr, *grad}}).get(),
              StatusIs(invalid, HasSubstr("null")));
  // Nothing reached the shard: the next request it sees is this ping-like
  // pull of b alone.
  auto pulled = client_->PullDense("b", 0, absl::MakeSpan(b_out));
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PULL_DENSE);
  EXPECT_EQ(request->header.tensor_name(), "b");
  shard.Reply(*request, absl::OkStatus(), {Floats({1, 2, 3})});
  EXPECT_THAT(pulled.get(), IsOk());
}

TEST_F(PsClientTest, BadTablesCallsFailBeforeAnythingIsSent) {
  FakeShard shard(0, 1);
  Connect({&shard});
  ASSERT_THAT(client_->RegisterSpecs({TableSpec("a", 2)}), IsOk());
  const std::vector<uint64_t> ids = {1};
  std::vector<float> out(2), short_out(1);
  EXPECT_THAT(client_
                  ->PullTables({{"a", ids, absl::MakeSpan(out)},
                                {"a", ids, absl::MakeSpan(out)}})
                  .get(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(
      client_->PullTables({{"a", ids, absl::MakeSpan(short_out)}}).get(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 2")));
  EXPECT_THAT(
      client_->PullTables({{"w", ids, absl::MakeSpan(out)}}).get(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dense tensor")));
  // Nothing with no ids: done at once, nothing sent.
  EXPECT_THAT(client_->PushTables({{"a", {}, {}}}).get(), IsOk());
  EXPECT_THAT(client_->PullTables({}).get(), IsOk());
  // The next request the shard sees is the ping.
  auto pinged =
      std::async(std::launch::async, [&] { return client_->Ping(0); });
  auto request = shard.Receive();
  ASSERT_THAT(request, IsOk());
  EXPECT_EQ(request->header.op(), v1::DataHeader::PING);
  shard.Reply(*request, absl::OkStatus());
  EXPECT_THAT(pinged.get(), IsOk());
}

TEST_F(PsClientTest, ShardsThatDisagreeOnThePlacementAreRefused) {
  FakeShard zero(0, 2), stranger(0, 3);
  PsClientOptions options;
  options.shard_addresses = {zero.address(), stranger.address()};
  EXPECT_THAT(PsClient::Connect(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is shard 0, but it is listed as shard 1")));
  FakeShard one_of_three(1, 3);
  options.shard_addresses = {zero.address(), one_of_three.address()};
  EXPECT_THAT(PsClient::Connect(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("disagree on the placement")));
}

TEST_F(PsClientTest, DestroyingTheClientCancelsWhatIsPending) {
  FakeShard shard(0, 1);
  Connect({&shard});
  std::vector<float> out(8);
  auto pulled = client_->PullDense("w", 0, absl::MakeSpan(out));
  ASSERT_THAT(shard.Receive(), IsOk());
  client_.reset();
  EXPECT_THAT(pulled.get(), StatusIs(absl::StatusCode::kCancelled));
}

}  // namespace
}  // namespace tessera
