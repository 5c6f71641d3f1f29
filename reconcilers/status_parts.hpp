// Pieces the status computations share (status.cpp, config_status.cpp, record_conditions.cpp).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "reconcilers/model/resources.hpp"

namespace ferry::reconcilers::detail {

using model::Condition;

inline model::CommonStatus with(std::vector<Condition> conds, std::int64_t generation) {
  model::CommonStatus s;
  s.observed_generation = generation;
  s.conditions = std::move(conds);
  return s;
}

inline Condition cond(std::string_view type, std::string status, std::string reason,
                      std::string message, std::int64_t generation) {
  return Condition{std::string(type), std::move(status), std::move(reason), std::move(message), "",
                   generation};
}

// Keeps the kind-specific fields of the stored status that the reconciler does not own.
inline boost::json::object merged(boost::json::object stored,
                                  const boost::json::object& computed,
                                  std::initializer_list<const char*> owned) {
  for (const char* k : owned) stored.erase(k);
  for (const auto& [k, v] : computed) stored[k] = v;
  return stored;
}

}  // namespace ferry::reconcilers::detail
