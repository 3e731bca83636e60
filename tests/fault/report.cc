#include "tests/fault/report.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace tessera::fault {
namespace {

std::string Cell(const std::string& text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}, {"\n", " "}});
}

}  // namespace

ScenarioReport::ScenarioReport(std::string id, std::string title)
    : id_(std::move(id)), title_(std::move(title)) {}

void ScenarioReport::Injected(const std::string& line) {
  injected_.push_back(line);
}

void ScenarioReport::Observed(const std::string& line) {
  observed_.push_back(line);
}

void ScenarioReport::Figure(const std::string& name, const std::string& value) {
  figures_.push_back({name, value});
}

void ScenarioReport::Table(std::vector<std::string> header) {
  header_ = std::move(header);
  rows_.clear();
}

void ScenarioReport::Row(std::vector<std::string> cells) {
  rows_.push_back(std::move(cells));
}

void ScenarioReport::Note(const std::string& line) { notes_.push_back(line); }

void ScenarioReport::Write(const std::string& outcome) {
  if (written_) return;
  written_ = true;
  std::string md =
      absl::StrCat("### ", title_, "\n\n**Outcome:** ", outcome, "\n\n");
  if (!injected_.empty()) {
    absl::StrAppend(&md, "Injected:\n\n");
    for (const auto& l : injected_) absl::StrAppend(&md, "- ", l, "\n");
    absl::StrAppend(&md, "\n");
  }
  if (!observed_.empty()) {
    absl::StrAppend(&md, "Observed:\n\n");
    for (const auto& l : observed_) absl::StrAppend(&md, "- ", l, "\n");
    absl::StrAppend(&md, "\n");
  }
  if (!figures_.empty()) {
    absl::StrAppend(&md, "| figure | value |\n|---|---|\n");
    for (const auto& [k, v] : figures_) {
      absl::StrAppend(&md, "| ", Cell(k), " | ", Cell(v), " |\n");
    }
    absl::StrAppend(&md, "\n");
  }
  if (!header_.empty()) {
    std::vector<std::string> cells;
    for (const auto& h : header_) cells.push_back(Cell(h));
    absl::StrAppend(&md, "| ", absl::StrJoin(cells, " | "), " |\n|");
    for (size_t i = 0; i < header_.size(); ++i) absl::StrAppend(&md, "---|");
    absl::StrAppend(&md, "\n");
    for (const auto& row : rows_) {
      cells.clear();
      for (const auto& c : row) cells.push_back(Cell(c));
      absl::StrAppend(&md, "| ", absl::StrJoin(cells, " | "), " |\n");
    }
    absl::StrAppend(&md, "\n");
  }
  for (const auto& n : notes_) absl::StrAppend(&md, n, "\n\n");

  std::cout << "\n---- reliability report: " << id_ << " ----\n"
            << md << std::flush;
  const char* out = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  if (out == nullptr) return;
  const std::string dir = absl::StrCat(out, "/reliability");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::ofstream file(absl::StrCat(dir, "/", id_, ".md"));
  file << md;
}

}  // namespace tessera::fault
