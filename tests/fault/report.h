#ifndef TESSERA_TESTS_FAULT_REPORT_H_
#define TESSERA_TESTS_FAULT_REPORT_H_

// One scenario's section of docs/reliability.md: what was injected, what was
// observed, figures and tables, and the outcome. Written as a markdown
// fragment to $TEST_UNDECLARED_OUTPUTS_DIR/reliability/<id>.md (and echoed to
// stdout) when Write() is called; tests/fault/assemble_report.py puts the
// fragments together.
//
// Thread-compatible.

#include <string>
#include <utility>
#include <vector>

namespace tessera::fault {

class ScenarioReport {
 public:
  // `id` orders the fragments ("02-sigkill"); `title` is the heading.
  ScenarioReport(std::string id, std::string title);

  void Injected(const std::string& line);
  void Observed(const std::string& line);
  void Figure(const std::string& name, const std::string& value);
  // A table with `header` columns; rows are added with Row().
  void Table(std::vector<std::string> header);
  void Row(std::vector<std::string> cells);
  void Note(const std::string& line);

  // Renders the fragment with `outcome` ("passed", "FAILED", "skipped: ...")
  // and writes it. Call once.
  void Write(const std::string& outcome);

 private:
  const std::string id_;
  const std::string title_;
  std::vector<std::string> injected_;
  std::vector<std::string> observed_;
  std::vector<std::pair<std::string, std::string>> figures_;
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::string> notes_;
  bool written_ = false;
};

}  // namespace tessera::fault

#endif  // TESSERA_TESTS_FAULT_REPORT_H_
