// JSON Schema scalars: integer and number ranges, strings, formats.
#include <algorithm>
#include <cmath>

#include "structured/json_schema_compiler.h"

namespace qwenmux::structured::internal {

std::vector<Seq> SchemaCompiler::SameLength(const std::string& lo, const std::string& hi) {
  if (lo.empty()) return {{}};
  const ByteSet any_digit = ByteSet::Range('0', '9');
  auto all = [](const std::string& s, char c) { return std::all_of(s.begin(), s.end(), [c](char x) { return x == c; }); };
  const std::string lo_rest = lo.substr(1), hi_rest = hi.substr(1);
  if (all(lo_rest, '0') && all(hi_rest, '9')) {
    Seq s{g_.Bytes(ByteSet::Range(static_cast<uint8_t>(lo[0]), static_cast<uint8_t>(hi[0])))};
    for (size_t i = 0; i < lo_rest.size(); ++i) s.push_back(g_.Bytes(any_digit));
    return {s};
  }
  if (lo[0] == hi[0]) {
    Seq s{g_.Byte(static_cast<uint8_t>(lo[0]))};
    s.push_back(GrammarBuilder::Ref(g_.Rule("range", SameLength(lo_rest, hi_rest))));
    return {s};
  }
  std::vector<Seq> alts;
  Seq first{g_.Byte(static_cast<uint8_t>(lo[0])),
            GrammarBuilder::Ref(g_.Rule("range", SameLength(lo_rest, std::string(lo_rest.size(), '9'))))};
  alts.push_back(first);
  if (hi[0] - lo[0] >= 2) {
    Seq mid{g_.Bytes(ByteSet::Range(static_cast<uint8_t>(lo[0] + 1), static_cast<uint8_t>(hi[0] - 1)))};
    for (size_t i = 0; i < lo_rest.size(); ++i) mid.push_back(g_.Bytes(any_digit));
    alts.push_back(mid);
  }
  Seq last{g_.Byte(static_cast<uint8_t>(hi[0])),
           GrammarBuilder::Ref(g_.Rule("range", SameLength(std::string(hi_rest.size(), '0'), hi_rest)))};
  alts.push_back(last);
  return alts;
}

uint32_t SchemaCompiler::NonNegRange(uint64_t a, uint64_t b) {
  std::vector<Seq> alts;
  for (int len = 1; len <= 19; ++len) {
    const uint64_t lo_l = len == 1 ? 0 : static_cast<uint64_t>(Pow10(len - 1));
    const uint64_t hi_l = len >= 19 ? UINT64_MAX : static_cast<uint64_t>(Pow10(len)) - 1;
    const uint64_t lo = std::max(a, lo_l), hi = std::min(b, hi_l);
    if (lo > hi) continue;
    for (Seq& s : SameLength(std::to_string(lo), std::to_string(hi))) alts.push_back(std::move(s));
  }
  return g_.Rule("uint", std::move(alts));
}

uint32_t SchemaCompiler::IntRange(int64_t lo, int64_t hi) {
  std::vector<Seq> alts;
  if (hi >= 0) alts.push_back({GrammarBuilder::Ref(NonNegRange(static_cast<uint64_t>(std::max<int64_t>(lo, 0)), static_cast<uint64_t>(hi)))});
  if (lo < 0) {
    const uint64_t mlo = hi < 0 ? static_cast<uint64_t>(-hi) : 1, mhi = static_cast<uint64_t>(-lo);
    alts.push_back({g_.Byte('-'), GrammarBuilder::Ref(NonNegRange(mlo, mhi))});
  }
  return g_.Rule("int", std::move(alts));
}

uint32_t SchemaCompiler::Fraction() {
  if (!frac_) frac_ = g_.Rule("frac", {{g_.Byte('.'), GrammarBuilder::Ref(Digits(1, o_.max_fraction_digits))}});
  return *frac_;
}

Result<std::pair<std::optional<double>, std::optional<double>>> SchemaCompiler::Bounds(const json& s, const std::string& path) const {
  std::optional<double> lo, hi;
  bool lo_excl = false, hi_excl = false;
  auto num = [&](const char* k) -> Result<std::optional<double>> {
    if (!s.contains(k)) return std::optional<double>();
    if (s[k].is_boolean()) return std::optional<double>();
    if (!s[k].is_number()) return Fail(path, fmt::format("'{}' must be a number", k));
    return std::optional<double>(s[k].get<double>());
  };
  QM_ASSIGN_OR_RETURN(lo, num("minimum"));
  QM_ASSIGN_OR_RETURN(hi, num("maximum"));
  QM_ASSIGN_OR_RETURN(auto xlo, num("exclusiveMinimum"));
  QM_ASSIGN_OR_RETURN(auto xhi, num("exclusiveMaximum"));
  if (s.contains("exclusiveMinimum") && s["exclusiveMinimum"].is_boolean()) lo_excl = s["exclusiveMinimum"].get<bool>();
  if (s.contains("exclusiveMaximum") && s["exclusiveMaximum"].is_boolean()) hi_excl = s["exclusiveMaximum"].get<bool>();
  // Inward to integers.
  std::optional<double> ilo, ihi;
  if (lo) ilo = lo_excl ? std::floor(*lo) + 1 : std::ceil(*lo);
  if (xlo) ilo = std::max(ilo.value_or(-1e300), std::floor(*xlo) + 1);
  if (hi) ihi = hi_excl ? std::ceil(*hi) - 1 : std::floor(*hi);
  if (xhi) ihi = std::min(ihi.value_or(1e300), std::ceil(*xhi) - 1);
  return std::make_pair(ilo, ihi);
}

Result<uint32_t> SchemaCompiler::Integer(const json& s, const std::string& path) {
  QM_ASSIGN_OR_RETURN(auto b, Bounds(s, path));
  const double lim = static_cast<double>(Pow10(o_.max_integer_digits) - 1);
  const bool bounded = b.first || b.second;
  if (!bounded) {
    if (!default_int_) default_int_ = IntRange(-static_cast<int64_t>(lim), static_cast<int64_t>(lim));
    return *default_int_;
  }
  double lo = b.first.value_or(-lim), hi = b.second.value_or(lim);
  if (!b.second) hi = std::max(hi, std::min(lo + lim, 9e17));
  if (!b.first) lo = std::min(lo, std::max(hi - lim, -9e17));
  lo = std::max(lo, -9e17);
  hi = std::min(hi, 9e17);
  if (lo > hi) return Fail(path, "minimum/maximum leave no integer");
  return IntRange(static_cast<int64_t>(lo), static_cast<int64_t>(hi));
}

Result<uint32_t> SchemaCompiler::Number(const json& s, const std::string& path) {
  QM_ASSIGN_OR_RETURN(auto b, Bounds(s, path));
  const double lim = static_cast<double>(Pow10(o_.max_integer_digits) - 1);
  if (!b.first && !b.second) {
    if (default_number_) return *default_number_;
    ByteSet e, sign;
    e.Set('e');
    e.Set('E');
    sign.Set('+');
    sign.Set('-');
    const uint32_t exp = g_.Rule("exp", {{g_.Bytes(e), GrammarBuilder::Ref(g_.Optional({g_.Bytes(sign)})), g_.Bytes(ByteSet::Range('1', '9')),
                                          GrammarBuilder::Ref(Digits(0, 1))}});
    const uint32_t ip = IntRange(-static_cast<int64_t>(lim), static_cast<int64_t>(lim));
    default_number_ = g_.Rule("number", {{GrammarBuilder::Ref(ip), GrammarBuilder::Ref(g_.Optional({GrammarBuilder::Ref(Fraction())})),
                                          GrammarBuilder::Ref(g_.Optional({GrammarBuilder::Ref(exp)}))}});
    return *default_number_;
  }
  double lo = b.first.value_or(-lim), hi = b.second.value_or(lim);
  if (!b.second) hi = std::max(hi, std::min(lo + lim, 9e17));
  if (!b.first) lo = std::min(lo, std::max(hi - lim, -9e17));
  lo = std::max(lo, -9e17);
  hi = std::min(hi, 9e17);
  if (lo > hi) return Fail(path, "minimum/maximum leave no number this compiler can generate (bounds are rounded inward to integers)");
  const int64_t L = static_cast<int64_t>(lo), H = static_cast<int64_t>(hi);
  const uint32_t frac_opt = g_.Optional({GrammarBuilder::Ref(Fraction())});
  std::vector<Seq> alts;
  auto part = [&](Seq prefix, uint64_t a, uint64_t bnd) {  // magnitudes in [a, bnd]: a..bnd-1 with fraction, bnd plain
    if (bnd > a) {
      Seq s = prefix;
      s.push_back(GrammarBuilder::Ref(NonNegRange(a, bnd - 1)));
      s.push_back(GrammarBuilder::Ref(frac_opt));
      alts.push_back(s);
    }
    Seq s = prefix;
    const Seq lit = g_.Lit(std::to_string(bnd));
    s.insert(s.end(), lit.begin(), lit.end());
    alts.push_back(s);
  };
  if (H >= 0) part({}, static_cast<uint64_t>(std::max<int64_t>(L, 0)), static_cast<uint64_t>(H));
  if (L < 0) part({g_.Byte('-')}, H < 0 ? static_cast<uint64_t>(-H) : 0, static_cast<uint64_t>(-L));
  return g_.Rule("number", std::move(alts));
}

Result<Seq> SchemaCompiler::Format(const std::string& f, const std::string& path, int* min_len, int* max_len) {
  const ByteSet d = ByteSet::Range('0', '9');
  auto lit = [&](std::string_view s) { return g_.Lit(s); };
  auto cat = [](std::initializer_list<Seq> parts) {
    Seq out;
    for (const Seq& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
  };
  auto ref = [](uint32_t r) { return Seq{GrammarBuilder::Ref(r)}; };
  auto set = [&](std::string_view chars) {
    ByteSet s;
    for (char c : chars) s.Set(static_cast<uint8_t>(c));
    return g_.Bytes(s);
  };
  auto date = [&] {
    const uint32_t mmdd = g_.Rule(
        "mmdd", {cat({ref(g_.Rule("m", {{g_.Byte('0'), g_.Bytes(ByteSet::Range('1', '9'))}, {g_.Byte('1'), g_.Bytes(ByteSet::Range('0', '2'))}})),
                      lit("-"),
                      ref(g_.Rule("d", {{g_.Byte('0'), g_.Bytes(ByteSet::Range('1', '9'))}, {g_.Byte('1'), g_.Bytes(d)},
                                        {g_.Byte('2'), g_.Bytes(ByteSet::Range('0', '8'))}}))}),
                 cat({ref(g_.Rule("m30", {{g_.Byte('0'), set("13456789")}, {g_.Byte('1'), set("012")}})), lit("-"),
                      ref(g_.Rule("d30", {lit("29"), lit("30")}))}),
                 cat({ref(g_.Rule("m31", {{g_.Byte('0'), set("13578")}, {g_.Byte('1'), set("02")}})), lit("-31")})});
    return cat({{set("12"), g_.Bytes(d), g_.Bytes(d), g_.Bytes(d)}, lit("-"), ref(mmdd)});
  };
  auto time = [&] {
    const uint32_t hh = g_.Rule("hh", {{set("01"), g_.Bytes(d)}, {g_.Byte('2'), set("0123")}});
    const Seq mm{g_.Bytes(ByteSet::Range('0', '5')), g_.Bytes(d)};
    const uint32_t zone = g_.Rule("zone", {lit("Z"), cat({{set("+-")}, ref(hh), lit(":"), mm})});
    const uint32_t frac = g_.Optional({g_.Byte('.'), GrammarBuilder::Ref(Digits(1, 6))});
    return cat({ref(hh), lit(":"), mm, lit(":"), mm, ref(frac), ref(zone)});
  };
  if (f == "date") {
    *min_len = *max_len = 10;
    return date();
  }
  if (f == "time") {
    *min_len = 9, *max_len = 21;
    return time();
  }
  if (f == "date-time") {
    *min_len = 20, *max_len = 32;
    return cat({date(), lit("T"), time()});
  }
  if (f == "uuid") {
    *min_len = *max_len = 36;
    ByteSet hex = ByteSet::Range('0', '9');
    hex.SetRange('a', 'f');
    Seq s;
    for (int group : {8, 4, 4, 4, 12}) {
      if (!s.empty()) s.push_back(g_.Byte('-'));
      for (int i = 0; i < group; ++i) s.push_back(g_.Bytes(hex));
    }
    return s;
  }
  if (f == "ipv4") {
    *min_len = 7, *max_len = 15;
    const uint32_t octet = NonNegRange(0, 255);
    return cat({ref(octet), lit("."), ref(octet), lit("."), ref(octet), lit("."), ref(octet)});
  }
  if (f == "email") {
    *min_len = 6, *max_len = 47;
    ByteSet alnum = ByteSet::Range('a', 'z');
    alnum.SetRange('A', 'Z');
    alnum.SetRange('0', '9');
    ByteSet local = alnum, dom = alnum, alpha = ByteSet::Range('a', 'z');
    for (char c : std::string("._+-")) local.Set(static_cast<uint8_t>(c));
    dom.Set('-');
    const uint32_t local_tail = g_.Repeat({g_.Bytes(local)}, 0, 15, "local");
    const uint32_t dom_tail = g_.Repeat({g_.Bytes(dom)}, 0, 15, "domain");
    const uint32_t tld = g_.Repeat({g_.Byte('.'), GrammarBuilder::Ref(g_.Repeat({g_.Bytes(alpha)}, 2, 6, "tld"))}, 1, 2, "tlds");
    return Seq{g_.Bytes(alnum), GrammarBuilder::Ref(local_tail), g_.Byte('@'), g_.Bytes(alnum), GrammarBuilder::Ref(dom_tail),
               GrammarBuilder::Ref(tld)};
  }
  return Fail(path, fmt::format("unsupported format '{}' (supported: date, time, date-time, email, uuid, ipv4)", f));
}

Result<uint32_t> SchemaCompiler::String(const json& s, const std::string& path) {
  auto get = [&](const char* k) -> Result<std::optional<int64_t>> {
    if (!s.contains(k)) return std::optional<int64_t>();
    if (!s[k].is_number_integer() || s[k].get<int64_t>() < 0) return Fail(path, fmt::format("'{}' must be a non-negative integer", k));
    return std::optional<int64_t>(s[k].get<int64_t>());
  };
  QM_ASSIGN_OR_RETURN(auto min_len, get("minLength"));
  QM_ASSIGN_OR_RETURN(auto max_len, get("maxLength"));
  const int64_t lo = min_len.value_or(0);
  if (max_len && *max_len < lo) return Fail(path, "maxLength < minLength");
  if (lo > static_cast<int64_t>(kMaxStringRun)) return Fail(path, fmt::format("minLength {} is too large (at most {})", lo, kMaxStringRun));
  if (s.contains("format")) {
    if (!s["format"].is_string()) return Fail(path, "'format' must be a string");
    int fmin = 0, fmax = 0;
    QM_ASSIGN_OR_RETURN(Seq body, Format(s["format"].get<std::string>(), path + "/format", &fmin, &fmax));
    if (lo > fmin || (max_len && *max_len < fmax)) {
      return Fail(path, fmt::format("minLength/maxLength together with format '{}' are not supported", s["format"].get<std::string>()));
    }
    Seq q{g_.Byte('"')};
    q.insert(q.end(), body.begin(), body.end());
    q.push_back(g_.Byte('"'));
    return g_.Rule("format", {q});
  }
  const int64_t hi = max_len ? std::min<int64_t>(*max_len, kMaxStringRun) : std::max<int64_t>(lo, o_.max_string_length);
  return g_.Rule("string", {{g_.Byte('"'), GrammarBuilder::StringRun(static_cast<uint32_t>(lo), static_cast<uint32_t>(hi))}});
}

}  // namespace qwenmux::structured::internal
