#include "runtime/moe_route.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace qwenmux::runtime {

void RouteTopK(float* r, int64_t ne, int64_t k, int64_t* sel, float* w) {
  const float mx = *std::max_element(r, r + ne);
  float sum = 0;
  for (int64_t e = 0; e < ne; ++e) sum += (r[e] = std::exp(r[e] - mx));
  for (int64_t e = 0; e < ne; ++e) r[e] /= sum;
  thread_local std::vector<int64_t> order;
  order.resize(static_cast<size_t>(ne));
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return r[a] > r[b] || (r[a] == r[b] && a < b); });
  float total = 0;
  for (int64_t j = 0; j < k; ++j) total += r[order[static_cast<size_t>(j)]];
  for (int64_t j = 0; j < k; ++j) {
    sel[j] = order[static_cast<size_t>(j)];
    w[j] = r[sel[j]] / total;
  }
}

}  // namespace qwenmux::runtime
