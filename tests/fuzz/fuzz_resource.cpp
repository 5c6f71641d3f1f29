// Fuzzes resource files: YAML and JSON documents read into Ferry resources, then validated.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "reconcilers/model/parse.hpp"
#include "reconcilers/model/validate.hpp"

using namespace ferry::model;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (Format format : {Format::Yaml, Format::Json}) {
    auto docs = load_documents(text, format);
    if (!docs) continue;
    std::vector<Resource> resources;
    for (const auto& doc : *docs) {
      auto parsed = parse_resource(doc);
      if (!parsed.resource) continue;
      (void)validate(*parsed.resource);
      resources.push_back(std::move(*parsed.resource));
    }
    (void)validate_set(resources);
  }
  return 0;
}
