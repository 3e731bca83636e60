#include "worker/data/planted_criteo.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ps/common/status_macros.h"
#include "ps/spec/placement.h"
#include "worker/data/random.h"
#include "worker/data/task_metrics.h"

namespace tessera {
namespace worker {
namespace {

constexpr uint64_t kParameterSalt = 0x5bd1e9955bd1e995ULL;
constexpr uint64_t kHexSalt = 0x2545f4914f6cdd1dULL;
constexpr uint64_t kWeightSalt = 0x9fb21c651e98df25ULL;
constexpr uint64_t kTrainSalt = 0xd6e8feb86659fd93ULL;
constexpr uint64_t kTestSalt = 0xa0761d6478bd642fULL;
constexpr uint64_t kCalibrationSalt = 0xe7037ed1a0b428dbULL;
constexpr int kCalibrationExamples = 20000;
constexpr double kTargetPositiveRate = 0.25;
// Scale of the category weights and the dense weights: chosen so that the
// planted AUC is about 0.8 with the default options, and a logistic
// regression trained one epoch on 200k lines comes within 0.006 of it.
constexpr double kCategoryScale = 0.2;
constexpr double kDenseScale = 0.25;
constexpr size_t kFlushBytes = 1 << 20;

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Strict [-]digits into int64 (as TabularSource reads Criteo).
bool ParseInt64(absl::string_view text, int64_t* out) {
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, *out);
  return !text.empty() && error == std::errc() && ptr == end && text[0] != '+';
}

// Buffered output to a plain or gzip file.
class Output {
 public:
  static absl::StatusOr<std::unique_ptr<Output>> Open(const std::string& path,
                                                      bool gzip) {
    errno = 0;
    if (gzip) {
      gzFile file = gzopen(path.c_str(), "wb1");
      if (file == nullptr) {
        return absl::ErrnoToStatus(errno != 0 ? errno : ENOMEM,
                                   absl::StrCat("cannot create ", path));
      }
      gzbuffer(file, 1 << 20);
      return std::unique_ptr<Output>(new Output(path, nullptr, file));
    }
    FILE* file = std::fopen(path.c_str(), "wb");
    if (file == nullptr) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
    }
    return std::unique_ptr<Output>(new Output(path, file, nullptr));
  }
  ~Output() {
    if (plain_ != nullptr) std::fclose(plain_);
    if (gz_ != nullptr) gzclose(gz_);
  }

  std::string* buffer() { return &buffer_; }

  absl::Status MaybeFlush() {
    return buffer_.size() >= kFlushBytes ? Flush() : absl::OkStatus();
  }

  absl::Status Close() {
    TESSERA_RETURN_IF_ERROR(Flush());
    int result = 0;
    if (plain_ != nullptr) result = std::fclose(plain_);
    if (gz_ != nullptr) result = gzclose(gz_) == Z_OK ? 0 : -1;
    plain_ = nullptr;
    gz_ = nullptr;
    if (result != 0) {
      return absl::ErrnoToStatus(errno != 0 ? errno : EIO,
                                 absl::StrCat("closing ", path_));
    }
    return absl::OkStatus();
  }

 private:
  Output(std::string path, FILE* plain, gzFile gz)
      : path_(std::move(path)), plain_(plain), gz_(gz) {
    buffer_.reserve(kFlushBytes + 4096);
  }

  absl::Status Flush() {
    if (buffer_.empty()) return absl::OkStatus();
    bool ok = true;
    if (plain_ != nullptr) {
      ok = std::fwrite(buffer_.data(), 1, buffer_.size(), plain_) ==
           buffer_.size();
    } else {
      ok = gzwrite(gz_, buffer_.data(), buffer_.size()) ==
           static_cast<int>(buffer_.size());
    }
    buffer_.clear();
    if (!ok) {
      return absl::ErrnoToStatus(errno != 0 ? errno : EIO,
                                 absl::StrCat("writing ", path_));
    }
    return absl::OkStatus();
  }

  const std::string path_;
  FILE* plain_;
  gzFile gz_;
  std::string buffer_;
};

}  // namespace

absl::Status ValidatePlantedCriteoOptions(const PlantedCriteoOptions& o) {
  if (o.train_lines < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train_lines ", o.train_lines, " is negative"));
  }
  if (o.test_lines < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("test_lines ", o.test_lines, " is not positive"));
  }
  if (o.files < 1 || o.files > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("files ", o.files, " is not in [1, 100000]"));
  }
  if (o.vocabulary < 1 || o.vocabulary > kMaxPlantedVocabulary) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary ", o.vocabulary,
                                                   " is not in [1, ",
                                                   kMaxPlantedVocabulary, "]"));
  }
  if (!(o.zipf > 0 && o.zipf <= 10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("zipf ", o.zipf, " is not in (0, 10]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PlantedCriteoModel>> PlantedCriteoModel::Create(
    const PlantedCriteoOptions& options) {
  TESSERA_RETURN_IF_ERROR(ValidatePlantedCriteoOptions(options));
  return std::unique_ptr<PlantedCriteoModel>(new PlantedCriteoModel(options));
}

PlantedCriteoModel::PlantedCriteoModel(const PlantedCriteoOptions& options)
    : options_(options) {
  SplitMix64 rng(HashCombine(options.seed, kParameterSalt));
  for (Dense& d : dense_) {
    d.empty_probability = 0.02 + 0.28 * rng.Uniform();
    d.mu = 4.0 * rng.Uniform();
    d.s = 0.5 + rng.Uniform();
    d.weight = kDenseScale * rng.Normal();
  }
  const double top = static_cast<double>(options.vocabulary);
  const double bottom = std::min(10.0, top);
  for (int k = 0; k < kCriteoNumCategorical; ++k) {
    Field& f = fields_[k];
    // A scrambled order, so large and small vocabularies alternate.
    const int position = (k * 7) % kCriteoNumCategorical;
    f.vocabulary = std::max<int64_t>(
        1, std::llround(bottom * std::pow(top / bottom, position / 25.0)));
    f.empty_probability = 0.01 + 0.04 * rng.Uniform();
    // Fields with large vocabularies weigh less: their rare categories are
    // seen too seldom to learn, and would widen the gap between the planted
    // AUC and what a model trained on a few hundred thousand lines reaches.
    f.sigma = kCategoryScale * (0.5 + rng.Uniform()) *
              std::pow(10.0 / std::max<double>(f.vocabulary, 10), 0.2);
    f.cdf.resize(f.vocabulary);
    f.hex.resize(8 * f.vocabulary);
    f.weights.resize(f.vocabulary);
    double sum = 0;
    for (int64_t r = 0; r < f.vocabulary; ++r) {
      sum += std::pow(static_cast<double>(r + 1), -options.zipf);
      f.cdf[r] = sum;
    }
    for (double& c : f.cdf) c /= sum;
    f.cdf.back() = 1.0;
    const uint64_t field_key = HashCombine(options.seed ^ kHexSalt, k);
    for (int64_t r = 0; r < f.vocabulary; ++r) {
      const uint32_t code =
          static_cast<uint32_t>(Mix64(HashCombine(field_key, r)));
      char text[9];
      absl::SNPrintF(text, sizeof(text), "%08x", code);
      std::copy(text, text + 8, &f.hex[8 * r]);
      f.weights[r] = CategoryWeight(k, absl::string_view(&f.hex[8 * r], 8));
    }
    f.empty_weight = CategoryWeight(k, "");
  }
  // Calibrate the bias on examples of a stream of their own.
  std::vector<double> logits;
  std::string scratch;
  int label = 0;
  bias_ = 0;
  for (int i = 0; i < kCalibrationExamples; ++i) {
    scratch.clear();
    const double p = AppendLine(static_cast<Stream>(2), i, &scratch, &label);
    logits.push_back(std::log(p) - std::log1p(-p));
  }
  double lo = -20, hi = 20;
  for (int iteration = 0; iteration < 60; ++iteration) {
    const double mid = 0.5 * (lo + hi);
    double mean = 0;
    for (double x : logits) mean += Sigmoid(x + mid);
    mean /= logits.size();
    (mean < kTargetPositiveRate ? lo : hi) = mid;
  }
  bias_ = 0.5 * (lo + hi);
}

double PlantedCriteoModel::CategoryWeight(int field,
                                          absl::string_view value) const {
  SplitMix64 rng(HashCombine(
      HashCombine(options_.seed ^ kWeightSalt, static_cast<uint64_t>(field)),
      StableHash(std::string_view(value.data(), value.size()))));
  return fields_[field].sigma * rng.Normal();
}

double PlantedCriteoModel::Logit(double bias,
                                 const std::array<Dense, 13>& dense,
                                 const int64_t* ints, const bool* present,
                                 const double* category_weights) {
  double logit = bias;
  for (int j = 0; j < kCriteoNumDense; ++j) {
    if (present[j] && ints[j] > 0) {
      logit += dense[j].weight * std::log1p(static_cast<double>(ints[j]));
    }
  }
  for (int k = 0; k < kCriteoNumCategorical; ++k) {
    logit += category_weights[k];
  }
  return logit;
}

absl::StatusOr<double> PlantedCriteoModel::Probability(
    absl::string_view line) const {
  int64_t ints[kCriteoNumDense] = {};
  bool present[kCriteoNumDense] = {};
  double weights[kCriteoNumCategorical] = {};
  int field = 0;
  size_t start = 0;
  while (true) {
    const size_t tab = line.find('\t', start);
    const absl::string_view text = line.substr(
        start, tab == absl::string_view::npos ? line.npos : tab - start);
    if (field == 0) {
      if (text != "0" && text != "1") {
        return absl::InvalidArgumentError("label is not 0 or 1");
      }
    } else if (field <= kCriteoNumDense) {
      present[field - 1] = !text.empty();
      if (!text.empty() && !ParseInt64(text, &ints[field - 1])) {
        return absl::InvalidArgumentError(
            absl::StrCat("I", field, " is not an integer"));
      }
    } else if (field < 1 + kCriteoNumDense + kCriteoNumCategorical) {
      const int k = field - 1 - kCriteoNumDense;
      weights[k] =
          text.empty() ? fields_[k].empty_weight : CategoryWeight(k, text);
    }
    ++field;
    if (tab == absl::string_view::npos) break;
    start = tab + 1;
  }
  if (field != 1 + kCriteoNumDense + kCriteoNumCategorical) {
    return absl::InvalidArgumentError(absl::StrCat(field, " fields, not 40"));
  }
  return Sigmoid(Logit(bias_, dense_, ints, present, weights));
}

double PlantedCriteoModel::AppendLine(Stream stream, int64_t index,
                                      std::string* out, int* label) const {
  const uint64_t salt = stream == Stream::kTrain  ? kTrainSalt
                        : stream == Stream::kTest ? kTestSalt
                                                  : kCalibrationSalt;
  SplitMix64 rng(HashCombine(options_.seed ^ salt, index));
  int64_t ints[kCriteoNumDense];
  bool present[kCriteoNumDense];
  double weights[kCriteoNumCategorical];
  const char* hex[kCriteoNumCategorical];
  for (int j = 0; j < kCriteoNumDense; ++j) {
    const Dense& d = dense_[j];
    present[j] = rng.Uniform() >= d.empty_probability;
    const double x = std::exp(d.mu + d.s * rng.Normal());
    ints[j] = static_cast<int64_t>(std::floor(std::min(x, 1e9))) - 1;
  }
  for (int k = 0; k < kCriteoNumCategorical; ++k) {
    const Field& f = fields_[k];
    const bool empty = rng.Uniform() < f.empty_probability;
    const double u = rng.Uniform();
    if (empty) {
      weights[k] = f.empty_weight;
      hex[k] = nullptr;
      continue;
    }
    const int64_t r =
        std::upper_bound(f.cdf.begin(), f.cdf.end(), u) - f.cdf.begin();
    const int64_t rank = std::min(r, f.vocabulary - 1);
    weights[k] = f.weights[rank];
    hex[k] = &f.hex[8 * rank];
  }
  const double p = Sigmoid(Logit(bias_, dense_, ints, present, weights));
  *label = rng.Uniform() < p ? 1 : 0;
  char line[1024];
  char* at = line;
  *at++ = static_cast<char>('0' + *label);
  for (int j = 0; j < kCriteoNumDense; ++j) {
    *at++ = '\t';
    if (present[j]) at = std::to_chars(at, line + sizeof(line), ints[j]).ptr;
  }
  for (int k = 0; k < kCriteoNumCategorical; ++k) {
    *at++ = '\t';
    if (hex[k] != nullptr) {
      std::copy(hex[k], hex[k] + 8, at);
      at += 8;
    }
  }
  *at++ = '\n';
  out->append(line, at - line);
  return p;
}

absl::StatusOr<PlantedCriteoSummary> WritePlantedCriteo(
    const std::string& out_dir, const PlantedCriteoOptions& options) {
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<PlantedCriteoModel> model,
                           PlantedCriteoModel::Create(options));
  std::error_code error;
  std::filesystem::create_directories(out_dir + "/train", error);
  if (error) {
    return absl::ErrnoToStatus(error.value(),
                               absl::StrCat("cannot create ", out_dir));
  }
  PlantedCriteoSummary summary;
  const std::string suffix = options.gzip ? ".tsv.gz" : ".tsv";
  int label = 0;
  int64_t train_positives = 0;
  for (int f = 0; f < options.files; ++f) {
    const std::string path =
        absl::StrFormat("%s/train/part-%05d%s", out_dir, f, suffix);
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Output> out,
                             Output::Open(path, options.gzip));
    const int64_t begin = options.train_lines * f / options.files;
    const int64_t end = options.train_lines * (f + 1) / options.files;
    for (int64_t i = begin; i < end; ++i) {
      model->AppendLine(PlantedCriteoModel::Stream::kTrain, i, out->buffer(),
                        &label);
      train_positives += label;
      TESSERA_RETURN_IF_ERROR(out->MaybeFlush());
    }
    TESSERA_RETURN_IF_ERROR(out->Close());
    summary.train_files.push_back(path);
  }
  summary.test_file = out_dir + "/test" + suffix;
  std::vector<double> probabilities;
  std::vector<float> labels;
  probabilities.reserve(options.test_lines);
  labels.reserve(options.test_lines);
  {
    TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Output> out,
                             Output::Open(summary.test_file, options.gzip));
    for (int64_t i = 0; i < options.test_lines; ++i) {
      probabilities.push_back(model->AppendLine(
          PlantedCriteoModel::Stream::kTest, i, out->buffer(), &label));
      labels.push_back(static_cast<float>(label));
      TESSERA_RETURN_IF_ERROR(out->MaybeFlush());
    }
    TESSERA_RETURN_IF_ERROR(out->Close());
  }
  int64_t test_positives = 0;
  for (float y : labels) test_positives += y == 1.0f;
  summary.positive_rate =
      static_cast<double>(test_positives) / options.test_lines;
  summary.train_positive_rate =
      options.train_lines > 0
          ? static_cast<double>(train_positives) / options.train_lines
          : 0.0;
  absl::StatusOr<double> auc = RocAuc(probabilities, labels);
  // One class only (a tiny test file): no AUC; 0.5 says "no information".
  summary.best_auc = auc.ok() ? *auc : 0.5;
  TESSERA_ASSIGN_OR_RETURN(summary.best_log_loss,
                           LogLoss(probabilities, labels));
  summary.bias = model->bias();
  for (int k = 0; k < kCriteoNumCategorical; ++k) {
    summary.field_vocabularies.push_back(model->vocabulary(k));
  }
  summary.json = absl::StrFormat(
      "{\n  \"best_auc\": %.17g,\n  \"best_log_loss\": %.17g,\n"
      "  \"positive_rate\": %.17g,\n  \"train_positive_rate\": %.17g,\n"
      "  \"train_lines\": %d,\n  \"test_lines\": %d,\n  \"seed\": %d,\n"
      "  \"files\": %d,\n  \"gzip\": %s,\n  \"vocabulary\": %d,\n"
      "  \"zipf\": %.17g,\n  \"bias\": %.17g,\n"
      "  \"field_vocabularies\": [%s]\n}\n",
      summary.best_auc, summary.best_log_loss, summary.positive_rate,
      summary.train_positive_rate, options.train_lines, options.test_lines,
      options.seed, options.files, options.gzip ? "true" : "false",
      options.vocabulary, options.zipf, summary.bias,
      absl::StrJoin(summary.field_vocabularies, ", "));
  TESSERA_ASSIGN_OR_RETURN(std::unique_ptr<Output> json,
                           Output::Open(out_dir + "/planted.json", false));
  json->buffer()->append(summary.json);
  TESSERA_RETURN_IF_ERROR(json->Close());
  return summary;
}

}  // namespace worker
}  // namespace tessera
