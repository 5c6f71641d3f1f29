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
#include "registry/oci_layout.hpp"

namespace ferry::cli {
namespace {

namespace reg = ferry::registry;

constexpr std::string_view kAbout = R"(References: [docker://|http://|https://]HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST],
e.g. 127.0.0.1:5001/prod/app:v1 or docker://registry.example.com/prod/app:v1 (skopeo's form).
SRC may be oci:DIR[:TAG], an OCI image layout on disk (TAG: its org.opencontainers.image.ref.name;
left out when it holds one image), as scripts/build-image.sh writes.
HTTPS, except plain HTTP for localhost, 127.0.0.0/8 and [::1] (crane's habit) unless --*-tls, a
TLS flag or https:// asks for TLS; http:// or --*-insecure is plain HTTP anywhere.
With --all-tags, SRC and DST are repositories (no :TAG or @DIGEST) and every tag is copied.
Every child of an index is copied; manifest bytes and digests are preserved.
--from-file LIST: one "SRC DST" pair per line, # comments.
Exit codes: 0 every image copied; 1 one failed; 2 a usage error.)";

struct SideFlags {
  std::string creds;
  std::string authfile;
  bool insecure = false;
  bool tls = false;  // HTTPS even for a loopback registry
  bool tls_verify = true;
  CLI::Option* tls_verify_flag = nullptr;  // given at all: TLS is wanted
  std::vector<std::string> ca_files;
};

// How a reference was written: docker:// (or bare), http://, https://.
enum class Transport { Default, Http, Https };

struct SideReference {
  reg::Reference ref;
  Transport transport = Transport::Default;
  bool whole_repository = false;  // neither :TAG nor @DIGEST written
};

reg::Result<SideReference> parse_side(std::string_view text) {
  SideReference out;
  for (auto [prefix, transport] : {std::pair{std::string_view("docker://"), Transport::Default},
                                   std::pair{std::string_view("http://"), Transport::Http},
                                   std::pair{std::string_view("https://"), Transport::Https}}) {
    if (text.starts_with(prefix)) {
      text.remove_prefix(prefix.size());
      out.transport = transport;
      break;
    }
  }
  auto ref = reg::parse_reference(text);
  if (!ref) return std::unexpected(ref.error());
  out.ref = *ref;
  out.whole_repository = ref->digest.empty() && ref->tag == "latest" && !text.ends_with(":latest");
  return out;
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

reg::RegistryConfig config_for(const std::string& host, const SideFlags& f, Transport transport) {
  reg::RegistryConfig c;
  c.host = host;
  const bool tls_asked = f.tls || transport == Transport::Https || !f.ca_files.empty() ||
                         (f.tls_verify_flag && f.tls_verify_flag->count() > 0);
  c.plain_http = f.insecure || transport == Transport::Http || (reg::is_loopback_host(host) && !tls_asked);
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
  bool all_tags = false;
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
  cmd.add_flag(names("tls"), side.tls, whose + ": HTTPS even for localhost / 127.0.0.0/8 / [::1]");
  side.tls_verify_flag = cmd.add_flag(names("tls-verify"), side.tls_verify,
                                      whose + ": =false for HTTPS without certificate verification (explicit opt-in)");
  cmd.add_option(names("ca-file"), side.ca_files, whose + ": trust this PEM CA bundle in addition to the system CAs")
      ->type_name("FILE")
      ->allow_extra_args(false);  // one file per flag: SRC DST follow
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

// An error, with what to do when TLS met a plain-HTTP server (registry/http.cpp says so), or when
// plain HTTP, chosen because the host is a loopback address, was refused (a TLS server answers 400).
std::string explained(const reg::Error& e, bool source, const reg::RegistryConfig& config) {
  std::string out = e.to_string();
  const std::string side = source ? "--src-" : "--dest-";
  if (out.find("answered plain HTTP") != std::string::npos) {
    out += "; use " + side + "insecure or an http:// reference";
  } else if (config.plain_http && reg::is_loopback_host(config.host) && e.http_status == 400) {
    out += "; plain HTTP was used because " + config.host + " is a loopback address: if it serves TLS, use " + side +
           "tls or an https:// reference";
  }
  return out;
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

  std::vector<std::pair<SideReference, SideReference>> pairs;
  std::vector<std::pair<reg::LayoutReference, SideReference>> layouts;  // oci:DIR[:TAG] sources
  for (std::size_t i = 0; i < positional.size(); i += 2) {
    if (auto layout = reg::parse_layout_reference(positional[i])) {
      auto d = parse_side(positional[i + 1]);
      if (!d) {
        std::cerr << "ferry copy: " << d.error().to_string() << "\n";
        return 2;
      }
      if (f.all_tags) {
        std::cerr << "ferry copy: --all-tags copies registry repositories, not " << positional[i] << "\n";
        return 2;
      }
      layouts.emplace_back(std::move(*layout), std::move(*d));
      continue;
    }
    auto s = parse_side(positional[i]);
    auto d = parse_side(positional[i + 1]);
    if (!s || !d) {
      std::cerr << "ferry copy: " << (!s ? s.error() : d.error()).to_string() << "\n";
      return 2;
    }
    if (f.all_tags && (!s->whole_repository || !d->whole_repository)) {
      std::cerr << "ferry copy: --all-tags copies whole repositories: give " << s->ref.registry << "/"
                << s->ref.repository << " without :TAG or @DIGEST (and the same for DST)\n";
      return 2;
    }
    pairs.emplace_back(*s, *d);
  }
  int failed = 0;

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
  std::vector<reg::CopyJob> jobs;
  std::vector<reg::Result<reg::CopyResult>> results;
  std::map<std::pair<int, std::string>, reg::RegistryConfig> configs;  // by (0 source | 1 destination, host)
  try {
    // Resolve configs (credentials files, CA files) up front: start-up errors are usage errors.
    for (const auto& [s, d] : pairs) {
      configs.emplace(std::make_pair(0, s.ref.registry), config_for(s.ref.registry, src, s.transport));
      configs.emplace(std::make_pair(1, d.ref.registry), config_for(d.ref.registry, dst, d.transport));
    }
    for (const auto& [s, d] : layouts)
      configs.emplace(std::make_pair(1, d.ref.registry), config_for(d.ref.registry, dst, d.transport));
    // OCI layouts first, one after the other: files are read as fast as one upload takes them.
    reg::CopyStats layout_stats;
    std::vector<reg::CopyJob> layout_jobs;
    std::vector<reg::Result<reg::CopyResult>> layout_results;
    for (const auto& [s, d] : layouts) {
      layout_jobs.push_back({reg::Reference{"oci:" + s.dir, "", s.tag, ""}, d.ref});
      layout_results.push_back(reg::push_layout(s, d.ref, configs.at({1, d.ref.registry}), options, layout_stats));
    }
    for (const auto& [s, d] : pairs) {
      if (!f.all_tags) {
        jobs.push_back({s.ref, d.ref});
        continue;
      }
      auto tags = reg::list_tags(configs.at({0, s.ref.registry}), s.ref.repository);
      if (!tags || tags->empty()) {
        ++failed;
        std::cerr << "ferry copy: " << s.ref.registry << "/" << s.ref.repository << ": "
                  << (tags ? "no tags to copy" : explained(tags.error(), true, configs.at({0, s.ref.registry}))) << "\n";
        continue;
      }
      for (const auto& tag : *tags) {
        reg::CopyJob job{s.ref, d.ref};
        job.source.tag = job.destination.tag = tag;
        jobs.push_back(std::move(job));
      }
    }
    auto resolver = [configs](const std::string& host, reg::Side side) {
      return configs.at({side == reg::Side::Source ? 0 : 1, host});
    };
    if (!jobs.empty()) {
      results = reg::run_copies(jobs, resolver, options, [&](const reg::CopyStats& st) {
        final_stats = st;
        if (tty) progress(st);
      });
    }
    jobs.insert(jobs.begin(), layout_jobs.begin(), layout_jobs.end());
    results.insert(results.begin(), std::make_move_iterator(layout_results.begin()),
                   std::make_move_iterator(layout_results.end()));
    final_stats.blobs_copied += layout_stats.blobs_copied;
    final_stats.blobs_skipped += layout_stats.blobs_skipped;
    final_stats.manifests_pushed += layout_stats.manifests_pushed;
    final_stats.bytes_copied += layout_stats.bytes_copied;
  } catch (const std::exception& e) {
    std::cerr << "ferry copy: " << e.what() << "\n";
    return 2;
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  std::size_t copied = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i]) {
      ++copied;
      std::cout << jobs[i].destination.registry << "/" << jobs[i].destination.repository << "@" << results[i]->digest
                << "\n";
    } else {
      ++failed;
      const auto& e = results[i].error();
      const auto config = configs.find({e.at_source ? 0 : 1, e.at_source ? jobs[i].source.registry
                                                                         : jobs[i].destination.registry});
      const bool layout = jobs[i].source.repository.empty();  // oci:DIR[:TAG]
      std::cerr << "ferry copy: "
                << (layout ? jobs[i].source.registry + (jobs[i].source.tag.empty() ? "" : ":" + jobs[i].source.tag)
                           : jobs[i].source.to_string())
                << " -> " << jobs[i].destination.to_string() << ": "
                << (config == configs.end() ? e.to_string() : explained(e, e.at_source, config->second)) << "\n";
    }
  }
  if (!quiet) {
    const double secs = seconds();
    std::fprintf(stderr,
                 "ferry copy: %zu/%zu images, blobs copied=%llu skipped=%llu mounted=%llu, manifests=%llu, "
                 "%llu bytes (%s) in %.2f s\n",
                 copied, results.size(), static_cast<unsigned long long>(final_stats.blobs_copied),
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
  cmd->add_flag("-a,--all-tags", f->all_tags, "copy every tag of the repository SRC to the repository DST");
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
