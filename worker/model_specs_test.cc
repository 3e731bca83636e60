#include "worker/model_specs.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ps/common/job_config.h"
#include "ps/common/status_matchers.h"
#include "worker/job_model.h"

namespace tessera {
namespace worker {
namespace {

// A logreg job's table takes the memory policy and optimizer the job sets for
// "embedding"; its other tensors take the job's optimizer.
TEST(ModelSpecsTest, LogregTableTakesItsMemoryPolicyAndOptimizer) {
  auto job = ParseJobConfig(R"pb(
    name: "x"
    model {
      name: "logreg"
      embedding_dim: 4
      embedding_tables {
        module: "embedding"
        optimizer { kind: ADAGRAD learning_rate: 0.5 }
        memory_policy { max_rows: 100 eviction: EVICTION_DISK }
      }
    }
    dataset {
      format: SYNTHETIC_CTR
      num_examples: 10
      vocabulary: 1000
      features_per_example: 3
    }
    optimizer { kind: ADAM }
  )pb");
  ASSERT_THAT(job, IsOk());
  auto model = CreateJobModel(*job, "", 1);
  ASSERT_THAT(model, IsOk());
  int tables = 0;
  for (const v1::TensorSpec& spec : ModelSpecs(**model, *job)) {
    if (spec.kind() == v1::TensorSpec::EMBEDDING) {
      ++tables;
      EXPECT_EQ(spec.name(), "embedding");
      EXPECT_EQ(spec.memory_policy().max_rows(), 100);
      EXPECT_EQ(spec.memory_policy().eviction(),
                v1::MemoryPolicy::EVICTION_DISK);
      EXPECT_EQ(spec.optimizer().kind(), v1::OptimizerConfig::ADAGRAD);
      EXPECT_FLOAT_EQ(spec.optimizer().learning_rate(), 0.5f);
    } else {
      EXPECT_FALSE(spec.has_memory_policy()) << spec.name();
      EXPECT_EQ(spec.optimizer().kind(), v1::OptimizerConfig::ADAM)
          << spec.name();
    }
  }
  EXPECT_EQ(tables, 1);
}

}  // namespace
}  // namespace worker
}  // namespace tessera
