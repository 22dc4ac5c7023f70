#include "protocol_constants.h"

#include <cctype>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "dtype.h"
#include "header.h"
#include "table.h"

namespace pyrmap::cli {

namespace {

constexpr Dtype kDtypes[] = {Dtype::kNone,    Dtype::kInt32, Dtype::kInt64, Dtype::kFloat32,
                             Dtype::kFloat64, Dtype::kUInt8, Dtype::kBool};

std::string Code(Dtype d) { return std::to_string(static_cast<uint32_t>(d)); }

// A JSON string (the values here are ASCII without quotes or backslashes).
std::string Quote(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

std::string ProtocolConstantsJson() {
  std::vector<std::pair<std::string, std::string>> kv;
  auto num = [&](const char* name, uint64_t v) { kv.emplace_back(name, std::to_string(v)); };

  std::string magic;
  for (uint8_t b : kMagic) magic += (magic.empty() ? "" : ", ") + std::to_string(b);
  kv.emplace_back("MAGIC", "[" + magic + "]");
  num("VERSION_MAJOR", kVersionMajor);
  num("VERSION_MINOR", kVersionMinor);
  num("HEADER_SIZE", kHeaderSize);
  num("MAX_DIMS", kMaxDims);
  num("PAYLOAD_ALIGNMENT", kPayloadAlignment);

  num("OFF_MAGIC", off::kMagic);
  num("OFF_VERSION_MAJOR", off::kVersionMajor);
  num("OFF_VERSION_MINOR", off::kVersionMinor);
  num("OFF_HEADER_SIZE", off::kHeaderSize);
  num("OFF_STATE", off::kState);
  num("OFF_FLAGS", off::kFlags);
  num("OFF_OWNER_PID", off::kOwnerPid);
  num("OFF_WORKER_PID", off::kWorkerPid);
  num("OFF_RESULT_LOCATION", off::kResultLocation);
  num("OFF_INPUT_KIND", off::kInputKind);
  num("OFF_RESULT_KIND", off::kResultKind);
  num("OFF_INPUT", off::kInput);
  num("OFF_RESULT", off::kResult);
  num("OFF_ERROR_TYPE", off::kErrorType);
  num("OFF_ERROR_LENGTH", off::kErrorLength);
  num("OFF_ERROR_FLAGS", off::kErrorFlags);
  num("OFF_ERROR_TEXT", off::kErrorText);
  num("OFF_DESC_DTYPE", off::kDescDtype);
  num("OFF_DESC_ORDER", off::kDescOrder);
  num("OFF_DESC_NDIM", off::kDescNdim);
  num("OFF_DESC_COUNT", off::kDescCount);
  num("OFF_DESC_OFFSET", off::kDescOffset);
  num("OFF_DESC_NBYTES", off::kDescNbytes);
  num("OFF_DESC_SHAPE", off::kDescShape);

  num("ARRAY_DESC_SIZE", kArrayDescSize);
  num("ERROR_TYPE_SIZE", kErrorTypeSize);
  num("ERROR_TEXT_SIZE", kErrorTextSize);

  num("STATE_INPUT_READY", static_cast<uint32_t>(State::kInputReady));
  num("STATE_RESULT_READY", static_cast<uint32_t>(State::kResultReady));
  num("STATE_ERROR", static_cast<uint32_t>(State::kError));
  num("ORDER_C", static_cast<uint32_t>(Order::kC));
  num("ORDER_F", static_cast<uint32_t>(Order::kF));
  num("FLAG_RESULT_ORDER_F", kFlagResultOrderF);
  num("FLAG_RESULT_ORDER_ANY", kFlagResultOrderAny);
  num("FLAG_IN_PLACE", kFlagInPlace);
  num("RESULT_IN_RESULT_SEGMENT", kResultInResultSegment);
  num("RESULT_IN_INPUT_SEGMENT", kResultInInputSegment);
  num("ERROR_FLAG_TRUNCATED", kErrorFlagTruncated);
  num("FLAG_TABLES_SHIFT", kFlagTablesShift);
  num("FLAG_TABLES_MASK", kFlagTablesMask);
  num("TABLES_AUTO", kTablesAuto);
  num("TABLES_PANDAS", kTablesPandas);
  num("TABLES_NUMPY", kTablesNumpy);
  num("FLAG_INPUT_REFS", kFlagInputRefs);
  num("KIND_ARRAY", kKindArray);
  num("KIND_TABLE", kKindTable);
  // table.h (python/pyrmap/_table.py, without the prefix)
  {
    std::string m;
    for (uint8_t b : kTableMagic) m += (m.empty() ? "" : ", ") + std::to_string(b);
    kv.emplace_back("TABLE_MAGIC", "[" + m + "]");
  }
  num("TABLE_VERSION", kTableVersion);
  num("TABLE_HEADER_SIZE", kTableHeaderSize);
  num("TABLE_ENTRY_SIZE", kTableEntrySize);
  num("TABLE_NO_INDEX", kNoIndex);
  num("TABLE_MAX_ENTRIES", kMaxTableEntries);
  num("TABLE_IN_BLOCK", kInBlock);
  num("TABLE_IN_INPUT", kInInput);
  num("TABLE_KIND_ARRAY", static_cast<uint32_t>(EntryKind::kArray));
  num("TABLE_KIND_STRING", static_cast<uint32_t>(EntryKind::kString));
  num("TABLE_KIND_CATEGORY", static_cast<uint32_t>(EntryKind::kCategory));
  num("TABLE_KIND_DATETIME", static_cast<uint32_t>(EntryKind::kDatetime));
  num("TABLE_KIND_LIST", static_cast<uint32_t>(EntryKind::kList));
  num("TABLE_KIND_FRAME", static_cast<uint32_t>(EntryKind::kFrame));
  num("TABLE_KIND_NULL", static_cast<uint32_t>(EntryKind::kNull));
  num("TABLE_ROLE_ELEMENT", static_cast<uint32_t>(EntryRole::kElement));
  num("TABLE_ROLE_NAMES", static_cast<uint32_t>(EntryRole::kNames));
  num("TABLE_ROLE_LEVELS", static_cast<uint32_t>(EntryRole::kLevels));
  num("TABLE_ENTRY_MASKED", kEntryMasked);
  num("TABLE_ENTRY_NAMED", kEntryNamed);
  num("TABLE_ENTRY_ORDERED", kEntryOrdered);
  num("TABLE_ENTRY_INTEGER64", kEntryInteger64);
  num("TABLE_ENTRY_NO_TZONE", kEntryNoTzone);
  num("TABLE_ENTRY_LOCAL_TIME", kEntryLocalTime);
  num("TABLE_UNIT_DAY", static_cast<uint32_t>(TimeUnit::kDay));
  num("TABLE_UNIT_SECOND", static_cast<uint32_t>(TimeUnit::kSecond));
  num("TABLE_UNIT_MILLI", static_cast<uint32_t>(TimeUnit::kMilli));
  num("TABLE_UNIT_MICRO", static_cast<uint32_t>(TimeUnit::kMicro));
  num("TABLE_UNIT_NANO", static_cast<uint32_t>(TimeUnit::kNano));

  std::string names, codes, sizes, typestrs;
  for (Dtype d : kDtypes) {
    std::string upper = DtypeName(d);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    num(("DTYPE_" + upper).c_str(), static_cast<uint32_t>(d));
    const char* sep = names.empty() ? "" : ", ";
    names += fmt::format("{}{}: {}", sep, Quote(Code(d)), Quote(DtypeName(d)));
    codes += fmt::format("{}{}: {}", sep, Quote(DtypeName(d)), Code(d));
    sizes += fmt::format("{}{}: {}", sep, Quote(Code(d)), ItemSize(d));
    if (d != Dtype::kNone)
      typestrs += fmt::format("{}{}: {}", typestrs.empty() ? "" : ", ", Quote(Code(d)),
                              Quote(NumpyTypeString(d)));
  }
  num("MAX_DTYPE_CODE", kMaxDtypeCode);
  kv.emplace_back("DTYPE_NAMES", "{" + names + "}");
  kv.emplace_back("DTYPE_CODES", "{" + codes + "}");
  kv.emplace_back("ITEM_SIZES", "{" + sizes + "}");
  kv.emplace_back("NUMPY_TYPESTRS", "{" + typestrs + "}");
  kv.emplace_back("SUPPORTED_DTYPES", Quote(DtypeNameList()));

  std::string out = "{\n";
  for (size_t i = 0; i < kv.size(); ++i)
    out += fmt::format("  {}: {}{}\n", Quote(kv[i].first), kv[i].second, i + 1 < kv.size() ? "," : "");
  return out + "}\n";
}

}  // namespace pyrmap::cli
