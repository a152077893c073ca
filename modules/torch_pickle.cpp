// A minimal reader of torch.save'd state dicts (the zip format PyTorch writes since 1.6:
// archive/data.pkl + archive/data/<key>), for the official fuser checkpoints (torch_pickle.h).
#include "modules/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <map>
#include <memory>

#include "modules/common/error.h"
#include "modules/common/files.h"
#include "modules/fuser_checkpoint.h"

namespace c2c {
// ---- a minimal unpickler for torch.save'd state dicts --------------------------------------

namespace {

struct PyObj;
using Obj = std::shared_ptr<PyObj>;

struct PyObj {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;  // string, or "module.name" for a global
  std::vector<Obj> items;                        // tuple / list
  std::vector<std::pair<Obj, Obj>> dict;         // dict, insertion order
  torch::Tensor tensor;
};

Obj make(PyObj::Kind kind) {
  auto o = std::make_shared<PyObj>();
  o->kind = kind;
  return o;
}

torch::Dtype storage_dtype(const std::string& global, const std::string& path) {
  static const std::map<std::string, torch::Dtype> kinds = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.DoubleStorage", torch::kFloat64},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool}};
  auto it = kinds.find(global);
  C2C_CHECK(it != kinds.end(), path, ": unsupported storage type '", global, "'");
  return it->second;
}

class StateDictUnpickler {
 public:
  StateDictUnpickler(const std::string& path, caffe2::serialize::PyTorchStreamReader& reader,
                     const uint8_t* data, size_t size)
      : path_(path), reader_(reader), begin_(data), p_(data), end_(data + size) {}

  Obj run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;           // PROTO
        case 0x95: bytes(8); break;         // FRAME
        case '(': marks_.push_back(stack_.size()); break;
        case '.': C2C_CHECK(stack_.size() == 1, path_, ": pickle ended with ", stack_.size(),
                            " objects on the stack"); return stack_.back();
        case 'N': stack_.push_back(make(PyObj::kNone)); break;
        case 0x88: case 0x89: { auto o = make(PyObj::kBool); o->i = op == 0x88; push(o); break; }
        case 'K': push_int(byte()); break;
        case 'M': { uint16_t v; std::memcpy(&v, bytes(2), 2); push_int(v); break; }
        case 'J': { int32_t v; std::memcpy(&v, bytes(4), 4); push_int(v); break; }
        case 0x8a: {  // LONG1: little-endian two's complement
          const size_t n = byte();
          C2C_CHECK(n <= 8, path_, ": integer of ", n, " bytes in the pickle");
          const uint8_t* b = bytes(n);
          int64_t v = 0;
          for (size_t k = 0; k < n; ++k) v |= static_cast<int64_t>(b[k]) << (8 * k);
          if (n > 0 && n < 8 && (b[n - 1] & 0x80)) v -= int64_t(1) << (8 * n);
          push_int(v);
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const uint8_t* b = bytes(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | b[k];
          auto o = make(PyObj::kFloat);
          std::memcpy(&o->f, &bits, 8);
          push(o);
          break;
        }
        case 'X': { uint32_t n; std::memcpy(&n, bytes(4), 4); push_str(n); break; }
        case 0x8c: push_str(byte()); break;
        case 0x8d: { uint64_t n; std::memcpy(&n, bytes(8), 8); push_str(n); break; }
        case 'c': {
          std::string module = line(), name = line();
          auto o = make(PyObj::kGlobal);
          o->s = module + "." + name;
          push(o);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Obj name = pop(), module = pop();
          auto o = make(PyObj::kGlobal);
          o->s = module->s + "." + name->s;
          push(o);
          break;
        }
        case ')': push(make(PyObj::kTuple)); break;
        case 't': { auto o = make(PyObj::kTuple); o->items = pop_mark(); push(o); break; }
        case 0x85: case 0x86: case 0x87: {
          auto o = make(PyObj::kTuple);
          o->items.resize(op - 0x84);
          for (size_t k = o->items.size(); k-- > 0;) o->items[k] = pop();
          push(o);
          break;
        }
        case ']': push(make(PyObj::kList)); break;
        case 'a': { Obj v = pop(); top()->items.push_back(v); break; }
        case 'e': { auto v = pop_mark(); for (auto& x : v) top()->items.push_back(x); break; }
        case '}': push(make(PyObj::kDict)); break;
        case 's': { Obj v = pop(), k = pop(); top()->dict.emplace_back(k, v); break; }
        case 'u': {
          auto v = pop_mark();
          C2C_CHECK(v.size() % 2 == 0, path_, ": odd SETITEMS in the pickle");
          for (size_t k = 0; k < v.size(); k += 2) top()->dict.emplace_back(v[k], v[k + 1]);
          break;
        }
        case 'q': memo_[byte()] = top(); break;
        case 'r': { uint32_t n; std::memcpy(&n, bytes(4), 4); memo_[n] = top(); break; }
        case 0x94: memo_[memo_.size()] = top(); break;
        case 'h': push(memo(byte())); break;
        case 'j': { uint32_t n; std::memcpy(&n, bytes(4), 4); push(memo(n)); break; }
        case 'Q': push(persistent(pop())); break;
        case 'R': { Obj args = pop(), fn = pop(); push(reduce(fn, args)); break; }
        case 'b': pop(); break;  // BUILD: a state dict's _metadata; not needed
        default:
          fail(path_, ": unsupported pickle opcode ", int(op), " at byte ",
               p_ - 1 - begin_,
               "\nHINT: only torch.save'd state dicts of tensors can be read");
      }
    }
  }

 private:
  uint8_t byte() { return *bytes(1); }
  const uint8_t* bytes(size_t n) {
    C2C_CHECK(static_cast<size_t>(end_ - p_) >= n, path_, ": pickle data is truncated");
    const uint8_t* b = p_;
    p_ += n;
    return b;
  }
  std::string line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', end_ - p_));
    C2C_CHECK(nl != nullptr, path_, ": pickle data is truncated");
    std::string s(reinterpret_cast<const char*>(p_), nl - p_);
    p_ = nl + 1;
    return s;
  }
  void push(Obj o) { stack_.push_back(std::move(o)); }
  void push_int(int64_t v) { auto o = make(PyObj::kInt); o->i = v; push(o); }
  void push_str(size_t n) {
    auto o = make(PyObj::kStr);
    o->s.assign(reinterpret_cast<const char*>(bytes(n)), n);
    push(o);
  }
  Obj pop() {
    C2C_CHECK(!stack_.empty(), path_, ": malformed pickle (stack underflow)");
    Obj o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Obj top() {
    C2C_CHECK(!stack_.empty(), path_, ": malformed pickle (stack underflow)");
    return stack_.back();
  }
  std::vector<Obj> pop_mark() {
    C2C_CHECK(!marks_.empty() && marks_.back() <= stack_.size(), path_, ": malformed pickle");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Obj> v(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return v;
  }
  Obj memo(size_t k) {
    auto it = memo_.find(k);
    C2C_CHECK(it != memo_.end(), path_, ": malformed pickle (memo ", k, " unset)");
    return it->second;
  }
  static std::vector<int64_t> ints(const Obj& tuple, const std::string& path) {
    C2C_CHECK(tuple->kind == PyObj::kTuple, path, ": expected a tuple of sizes/strides");
    std::vector<int64_t> v;
    for (const auto& x : tuple->items) v.push_back(x->i);
    return v;
  }

  // ('storage', <torch.XStorage>, key, location, numel) -> a flat tensor of the record data/key.
  Obj persistent(const Obj& pid) {
    C2C_CHECK(pid->kind == PyObj::kTuple && pid->items.size() >= 5 &&
                  pid->items[0]->s == "storage",
              path_, ": unsupported persistent id in the pickle");
    const std::string key = pid->items[2]->s;
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      const torch::Dtype dtype = storage_dtype(pid->items[1]->s, path_);
      const int64_t numel = pid->items[4]->i;
      at::DataPtr ptr;
      size_t size = 0;
      std::tie(ptr, size) = reader_.getRecord("data/" + key);
      const size_t want = static_cast<size_t>(numel) * c10::elementSize(dtype);
      C2C_CHECK(size == want, path_, ": storage data/", key, " holds ", size, " bytes, expected ",
                want);
      torch::Tensor t = torch::empty({numel}, torch::dtype(dtype));
      if (size) std::memcpy(t.data_ptr(), ptr.get(), size);
      it = storages_.emplace(key, t).first;
    }
    auto o = make(PyObj::kTensor);
    o->tensor = it->second;
    return o;
  }

  Obj reduce(const Obj& fn, const Obj& args) {
    C2C_CHECK(fn->kind == PyObj::kGlobal && args->kind == PyObj::kTuple, path_,
              ": unsupported call in the pickle");
    if (fn->s == "collections.OrderedDict") return make(PyObj::kDict);
    if (fn->s == "torch._utils._rebuild_tensor_v2") {
      C2C_CHECK(args->items.size() >= 4 && args->items[0]->kind == PyObj::kTensor, path_,
                ": malformed _rebuild_tensor_v2 call");
      auto o = make(PyObj::kTensor);
      o->tensor = args->items[0]
                      ->tensor.as_strided(ints(args->items[2], path_), ints(args->items[3], path_),
                                          args->items[1]->i)
                      .clone();
      return o;
    }
    if (fn->s == "torch._utils._rebuild_parameter") {
      C2C_CHECK(!args->items.empty(), path_, ": malformed _rebuild_parameter call");
      return args->items[0];
    }
    fail(path_, ": unsupported object '", fn->s,
         "' in the pickle\nHINT: only state dicts of plain tensors can be read");
  }

  std::string path_;
  caffe2::serialize::PyTorchStreamReader& reader_;
  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::map<size_t, Obj> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> read_torch_state_dict(const std::string& path) {
  C2C_CHECK(file_exists(path), "state dict file not found: ", path);
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    at::DataPtr data;
    size_t size = 0;
    std::tie(data, size) = reader.getRecord("data.pkl");
    StateDictUnpickler unpickler(path, reader, static_cast<const uint8_t*>(data.get()), size);
    Obj root = unpickler.run();
    C2C_CHECK(root->kind == PyObj::kDict, path, ": the pickle does not hold a dict");
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (const auto& [k, v] : root->dict) {
      C2C_CHECK(k->kind == PyObj::kStr && v->kind == PyObj::kTensor, path,
                ": state dict entries must map names to tensors");
      out.emplace_back(k->s, v->tensor);
    }
    return out;
  } catch (const c10::Error& e) {
    fail(path, ": not a readable torch.save zip archive: ", e.what_without_backtrace(),
         "\nHINT: re-save it with torch.save(state_dict, path) (PyTorch >= 1.6, zip format)");
  }
}

}  // namespace c2c
