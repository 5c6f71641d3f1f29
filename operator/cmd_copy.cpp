// `ferry copy SRC DST [SRC DST ...] | --from-file LIST`: copies images between registries.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>
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

constexpr std::string_view kCopyUsage = R"(usage: ferry copy [FLAGS] SRC DST [SRC DST ...]
       ferry copy [FLAGS] --from-file LIST      (one "SRC DST" pair per line, # comments)

References: HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5001/prod/app:v1.
Every child of an index is copied; manifest bytes and digests are preserved.

Per side (--src-* for the source, --dest-* for the destination):
  --src-creds USER:PASS        credentials (prefer --src-authfile: arguments are visible to ps)
  --src-authfile FILE          Docker config JSON (auths/auth or username/password)
  --src-insecure               plain HTTP instead of HTTPS
  --src-tls-verify=false       HTTPS without certificate verification (explicit opt-in)
  --src-ca-file FILE           trust this PEM CA bundle in addition to the system CAs
  --src-cert-dir DIR           trust every *.crt in DIR (containers-style certs.d directory)
Copy:
  --digest-only                push the top manifest by digest only, without the tag
  --jobs N                     images copied concurrently (default 16)
  --blob-jobs N                blobs streamed concurrently (default 8)
  --chunk-bytes N              streaming buffer per blob direction (default 1048576)
  --patch                      upload each blob with one PATCH, then commit with PUT
                               (default: stream it in the committing PUT, one request fewer)
  --patch-bytes N              like --patch, in PATCH requests of N bytes
  -q, --quiet                  no progress line, no summary
  -v, --verbose                debug logging (never shows credentials)
  --log-level LEVEL            trace|debug|info|warn|error (default info; -v is debug)
  --log-format text|json       log lines on stderr as key=value text or JSON objects
)";

struct SideFlags {
  std::string creds;
  std::string authfile;
  bool insecure = false;
  bool tls_verify = true;
  std::vector<std::string> ca_files;
};

bool parse_size(std::string_view s, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

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

}  // namespace

int run_copy(int argc, char** argv) {
  SideFlags src, dst;
  reg::CopyOptions options;
  bool quiet = false;
  std::vector<std::string> positional;
  std::string from_file;
  try {
    for (int i = 0; i < argc; ++i) {
      std::string a = argv[i];
      std::string value;
      bool has_value = false;
      if (a.starts_with("--") && a.find('=') != std::string::npos) {
        value = a.substr(a.find('=') + 1);
        a = a.substr(0, a.find('='));
        has_value = true;
      }
      auto next = [&]() -> std::string {
        if (has_value) return value;
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      auto boolean = [&]() {
        if (!has_value) return true;
        if (value == "true" || value == "1") return true;
        if (value == "false" || value == "0") return false;
        throw std::invalid_argument(a + " takes true or false");
      };
      auto number = [&]() {
        std::uint64_t n = 0;
        const auto v = next();
        if (!parse_size(v, n) || n == 0) throw std::invalid_argument(a + " needs a positive number");
        return n;
      };
      SideFlags* side = nullptr;
      std::string flag = a;
      if (a.starts_with("--src-")) {
        side = &src;
        flag = a.substr(6);
      } else if (a.starts_with("--dest-") || a.starts_with("--dst-")) {
        side = &dst;
        flag = a.substr(a[3] == 'e' ? 7 : 6);
      }
      if (side) {
        if (flag == "creds") side->creds = next();
        else if (flag == "authfile") side->authfile = next();
        else if (flag == "insecure") side->insecure = boolean();
        else if (flag == "tls-verify") side->tls_verify = boolean();
        else if (flag == "ca-file") side->ca_files.push_back(next());
        else if (flag == "cert-dir") {
          const auto dir = next();
          for (const auto& e : std::filesystem::directory_iterator(dir))
            if (e.path().extension() == ".crt") side->ca_files.push_back(e.path().string());
        } else throw std::invalid_argument("unknown flag " + a);
      } else if (a == "--from-file") {
        from_file = next();
      } else if (a == "--digest-only") {
        options.digest_only = boolean();
      } else if (a == "--jobs") {
        options.max_parallel_images = number();
      } else if (a == "--blob-jobs") {
        options.max_parallel_blobs = number();
      } else if (a == "--chunk-bytes") {
        options.chunk_bytes = number();
      } else if (a == "--patch-bytes") {
        options.stream_in_put = false;
        options.patch_bytes = number();
      } else if (a == "--patch") {
        options.stream_in_put = false;
      } else if (a == "-q" || a == "--quiet") {
        quiet = true;
      } else if (a == "-v" || a == "--verbose") {
        spdlog::set_level(spdlog::level::debug);
      } else if (a == "-h" || a == "--help") {
        std::cout << kCopyUsage;
        return 0;
      } else if (a.starts_with("-") && a.size() > 1) {
        throw std::invalid_argument("unknown flag " + a);
      } else {
        positional.push_back(a);
      }
    }
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
    std::cerr << "ferry copy: " << e.what() << "\n" << kCopyUsage;
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

}  // namespace ferry::cli
