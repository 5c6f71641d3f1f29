// `ferry copy SRC DST [SRC DST ...] | --from-file LIST`: copies images between registries.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "operator/commands.hpp"
#include "registry/copier.hpp"

namespace ferry::cli {
namespace {

namespace reg = ferry::registry;

constexpr std::string_view kAbout = R"(References: HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5001/prod/app:v1.
Every child of an index is copied; manifest bytes and digests are preserved.
--from-file LIST: one "SRC DST" pair per line, # comments.
Exit codes: 0 every image copied; 1 one failed; 2 a usage error.)";

struct SideFlags {
  std::string creds;
  std::string authfile;
  bool insecure = false;
  bool tls_verify = true;
  std::vector<std::string> ca_files;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", b, units[u]);
  return buf;
}

reg::RegistryConfig config_for(const std::string& host, const SideFlags& f) {
  reg::RegistryConfig c;
  c.host = host;
  c.plain_http = f.insecure;
  c.tls.verify = f.tls_verify;
  c.tls.ca_files = f.ca_files;
  for (const auto& ca : f.ca_files) (void)read_file(ca);  // unreadable CA files are usage errors
  if (!f.authfile.empty()) {
    auto creds = reg::credentials_from_docker_config(read_file(f.authfile), reg::api_host(host));
    if (!creds) throw std::runtime_error(f.authfile + ": " + creds.error().message);
    c.credentials = *creds;
  }
  if (!f.creds.empty()) {
    auto creds = reg::parse_user_password(f.creds);
    if (!creds) throw std::runtime_error("--*-creds: " + creds.error().message);
    c.credentials = *creds;
  }
  return c;
}

struct CopyFlags {
  SideFlags src, dst;
  reg::CopyOptions options;
  bool quiet = false;
  bool verbose = false;
  std::vector<std::string> positional;
  std::string from_file;
};

// --src-NAME for the source, --dest-NAME (or --dst-NAME) for the destination.
void add_side(CLI::App& cmd, SideFlags& side, const std::string& prefix, const std::string& whose) {
  auto names = [&](const std::string& name) {
    return prefix == "src" ? "--src-" + name : "--dest-" + name + ",--dst-" + name;
  };
  cmd.add_option(names("creds"), side.creds, whose + " credentials USER:PASS (prefer the authfile: arguments are visible to ps)")
      ->type_name("USER:PASS");
  cmd.add_option(names("authfile"), side.authfile, whose + " Docker config JSON (auths/auth or username/password)")
      ->type_name("FILE");
  cmd.add_flag(names("insecure"), side.insecure, whose + ": plain HTTP instead of HTTPS");
  cmd.add_flag(names("tls-verify"), side.tls_verify,
               whose + ": =false for HTTPS without certificate verification (explicit opt-in)");
  cmd.add_option(names("ca-file"), side.ca_files, whose + ": trust this PEM CA bundle in addition to the system CAs")
      ->type_name("FILE");
  cmd.add_option_function<std::string>(
         names("cert-dir"),
         [&side](const std::string& dir) {
           std::error_code ec;
           for (const auto& e : std::filesystem::directory_iterator(dir, ec))
             if (e.path().extension() == ".crt") side.ca_files.push_back(e.path().string());
           if (ec) throw CLI::ValidationError("cert-dir", dir + ": " + ec.message());
         },
         whose + ": trust every *.crt in DIR (containers-style certs.d directory)")
      ->type_name("DIR");
}

template <class N>
CLI::Option* add_count(CLI::App& cmd, const std::string& name, N& out, const std::string& description) {
  return cmd.add_option(name, out, description)->type_name("N")->check(CLI::PositiveNumber)->capture_default_str();
}

int copy(CopyFlags& f) {
  const SideFlags &src = f.src, &dst = f.dst;
  const reg::CopyOptions& options = f.options;
  const bool quiet = f.quiet;
  std::vector<std::string>& positional = f.positional;
  const std::string& from_file = f.from_file;
  if (f.verbose) spdlog::set_level(spdlog::level::debug);
  try {
    if (!from_file.empty()) {
      std::istringstream lines(read_file(from_file));
      std::string line;
      while (std::getline(lines, line)) {
        if (auto h = line.find('#'); h != std::string::npos) line.erase(h);
        std::istringstream words(line);
        std::string s, d, extra;
        if (!(words >> s)) continue;
        if (!(words >> d) || (words >> extra)) throw std::invalid_argument(from_file + ": each line needs SRC DST");
        positional.push_back(s);
        positional.push_back(d);
      }
    }
    if (positional.empty() || positional.size() % 2 != 0) throw std::invalid_argument("need SRC DST pairs");
  } catch (const std::exception& e) {
    std::cerr << "ferry copy: " << e.what() << "\nRun 'ferry copy --help' for usage.\n";
    return 2;
  }

  std::vector<reg::CopyJob> jobs;
  for (std::size_t i = 0; i < positional.size(); i += 2) {
    auto s = reg::parse_reference(positional[i]);
    auto d = reg::parse_reference(positional[i + 1]);
    if (!s || !d) {
      std::cerr << "ferry copy: " << (!s ? s.error() : d.error()).to_string() << "\n";
      return 2;
    }
    jobs.push_back({*s, *d});
  }

  const bool tty = !quiet && isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  auto progress = [&](const reg::CopyStats& st) {
    std::fprintf(stderr, "\r\033[Kcopying: %llu blobs copied, %llu skipped, %llu mounted, %s, %.1f s",
                 static_cast<unsigned long long>(st.blobs_copied), static_cast<unsigned long long>(st.blobs_skipped),
                 static_cast<unsigned long long>(st.blobs_mounted), human_bytes(static_cast<double>(st.bytes_copied)).c_str(),
                 seconds());
  };
  reg::CopyStats final_stats;
  std::vector<reg::Result<reg::CopyResult>> results;
  try {
    // Resolve configs (credentials files, CA files) up front: start-up errors are usage errors.
    std::map<std::pair<int, std::string>, reg::RegistryConfig> configs;
    for (const auto& j : jobs) {
      configs.emplace(std::make_pair(0, j.source.registry), config_for(j.source.registry, src));
      configs.emplace(std::make_pair(1, j.destination.registry), config_for(j.destination.registry, dst));
    }
    auto resolver = [configs](const std::string& host, reg::Side side) {
      return configs.at({side == reg::Side::Source ? 0 : 1, host});
    };
    results = reg::run_copies(jobs, resolver, options,
                              [&](const reg::CopyStats& st) {
                                final_stats = st;
                                if (tty) progress(st);
                              });
  } catch (const std::exception& e) {
    std::cerr << "ferry copy: " << e.what() << "\n";
    return 2;
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  int failed = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i]) {
      std::cout << jobs[i].destination.registry << "/" << jobs[i].destination.repository << "@" << results[i]->digest
                << "\n";
    } else {
      ++failed;
      std::cerr << "ferry copy: " << jobs[i].source.to_string() << " -> " << jobs[i].destination.to_string() << ": "
                << results[i].error().to_string() << "\n";
    }
  }
  if (!quiet) {
    const double secs = seconds();
    std::fprintf(stderr,
                 "ferry copy: %zu/%zu images, blobs copied=%llu skipped=%llu mounted=%llu, manifests=%llu, "
                 "%llu bytes (%s) in %.2f s\n",
                 results.size() - failed, results.size(), static_cast<unsigned long long>(final_stats.blobs_copied),
                 static_cast<unsigned long long>(final_stats.blobs_skipped),
                 static_cast<unsigned long long>(final_stats.blobs_mounted),
                 static_cast<unsigned long long>(final_stats.manifests_pushed),
                 static_cast<unsigned long long>(final_stats.bytes_copied),
                 human_bytes(static_cast<double>(final_stats.bytes_copied)).c_str(), secs);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

CLI::App* add_copy(CLI::App& app, Action& action) {
  auto f = std::make_shared<CopyFlags>();
  auto* cmd = app.add_subcommand("copy", "Copy images or indexes between registries (like crane copy)");
  cmd->footer(std::string(kAbout));
  cmd->add_option("images", f->positional, "SRC DST [SRC DST ...]")->type_name("REF");
  cmd->add_option("--from-file", f->from_file, "one \"SRC DST\" pair per line")->type_name("LIST");
  add_side(*cmd, f->src, "src", "source");
  add_side(*cmd, f->dst, "dest", "destination");
  cmd->add_flag("--digest-only", f->options.digest_only, "push the top manifest by digest only, without the tag");
  add_count(*cmd, "--jobs", f->options.max_parallel_images, "images copied concurrently");
  add_count(*cmd, "--blob-jobs", f->options.max_parallel_blobs, "blobs streamed concurrently");
  add_count(*cmd, "--chunk-bytes", f->options.chunk_bytes, "streaming buffer per blob direction");
  cmd->add_flag_callback(
      "--patch", [f] { f->options.stream_in_put = false; },
      "upload each blob with one PATCH, then commit with PUT (default: stream it in the committing PUT)");
  add_count(*cmd, "--patch-bytes", f->options.patch_bytes, "like --patch, in PATCH requests of N bytes")
      ->each([f](const std::string&) { f->options.stream_in_put = false; });
  cmd->add_flag("-q,--quiet", f->quiet, "no progress line, no summary");
  cmd->add_flag("-v,--verbose", f->verbose, "debug logging, like --log-level debug (never shows credentials)");
  cmd->callback([f, &action] { action = [f] { return copy(*f); }; });
  return cmd;
}

}  // namespace ferry::cli
