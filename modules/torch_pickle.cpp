// A minimal reader of torch.save'd state dicts (the zip format PyTorch writes since 1.6:
// archive/data.pkl + archive/data/<key>), for the official fuser checkpoints (torch_pickle.h).
#include "modules/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <filesystem>
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

// The storage classes of torch.save's persistent ids, both directions.
const std::vector<std::pair<std::string, torch::Dtype>>& storage_types() {
  static const std::vector<std::pair<std::string, torch::Dtype>> kinds = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.BFloat16Storage", torch::kBFloat16},
      {"torch.HalfStorage", torch::kFloat16},  {"torch.DoubleStorage", torch::kFloat64},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool}};
  return kinds;
}

torch::Dtype storage_dtype(const std::string& global, const std::string& path) {
  for (const auto& [name, dtype] : storage_types())
    if (name == global) return dtype;
  fail(path, ": unsupported storage type '", global, "'");
}

std::string storage_type_of(torch::Dtype dtype, const std::string& path) {
  for (const auto& [name, d] : storage_types())
    if (d == dtype) return name;
  fail(path, ": no torch storage type for dtype ", std::string(c10::toString(dtype)));
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

// ---- the writer ----------------------------------------------------------------------------

namespace {

// Pickle protocol 2, the opcodes torch.save's state dicts use (no memo: loaders do not need it).
class StateDictPickler {
 public:
  void proto() { out_ += "\x80\x02"; }
  void stop() { out_ += '.'; }
  void op(char c) { out_ += c; }
  void global(const std::string& dotted) {  // "collections.OrderedDict"
    const size_t dot = dotted.rfind('.');
    out_ += 'c' + dotted.substr(0, dot) + "\n" + dotted.substr(dot + 1) + "\n";
  }
  void str(const std::string& s) {
    out_ += 'X';
    u32(static_cast<uint32_t>(s.size()));
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';
      out_ += static_cast<char>(v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {  // LONG1: little-endian two's complement
      out_ += '\x8a';
      out_ += static_cast<char>(8);
      for (int b = 0; b < 8; ++b) out_ += static_cast<char>((static_cast<uint64_t>(v) >> (8 * b)) & 0xff);
    }
  }
  void int_tuple(torch::IntArrayRef v) {
    out_ += '(';
    for (int64_t x : v) integer(x);
    out_ += 't';
  }
  void empty_ordered_dict() {  // collections.OrderedDict()
    global("collections.OrderedDict");
    out_ += ")R";
  }
  const std::string& bytes() const { return out_; }

 private:
  void u32(uint32_t v) {
    for (int b = 0; b < 4; ++b) out_ += static_cast<char>((v >> (8 * b)) & 0xff);
  }
  std::string out_;
};

}  // namespace

void write_torch_state_dict(const std::string& path,
                            const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  // The pickle: OrderedDict of name -> _rebuild_tensor_v2(storage, 0, size, stride, False,
  // OrderedDict()), then BUILD with {"_metadata": OrderedDict(prefix -> {"version": 1})}, as
  // torch.save(module.state_dict()) writes it.
  StateDictPickler p;
  p.proto();
  p.empty_ordered_dict();
  p.op('(');
  std::vector<torch::Tensor> storages;
  std::vector<std::string> prefixes{""};
  for (const auto& [name, t_in] : tensors) {
    C2C_CHECK(t_in.defined(), path, ": tensor '", name, "' is undefined");
    torch::Tensor t = t_in.detach().to(torch::kCPU).contiguous();
    p.str(name);
    p.global("torch._utils._rebuild_tensor_v2");
    p.op('(');
    p.op('(');  // the persistent id ('storage', type, key, location, numel)
    p.str("storage");
    p.global(storage_type_of(t.scalar_type(), path));
    p.str(std::to_string(storages.size()));
    p.str("cpu");
    p.integer(t.numel());
    p.op('t');
    p.op('Q');
    p.integer(0);  // storage offset
    p.int_tuple(t.sizes());
    p.int_tuple(t.strides());
    p.op('\x89');  // requires_grad False
    p.empty_ordered_dict();  // backward hooks
    p.op('t');
    p.op('R');
    storages.push_back(t);
    // Every module prefix of the name ("key_in" of "key_in.weight"), for _metadata.
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1))
      if (std::find(prefixes.begin(), prefixes.end(), name.substr(0, dot)) == prefixes.end())
        prefixes.push_back(name.substr(0, dot));
  }
  p.op('u');  // SETITEMS
  p.op('}');  // the instance state
  p.str("_metadata");
  p.empty_ordered_dict();
  p.op('(');
  for (const auto& prefix : prefixes) {
    p.str(prefix);
    p.op('}');
    p.str("version");
    p.integer(1);
    p.op('s');
  }
  p.op('u');
  p.op('s');
  p.op('b');  // BUILD
  p.stop();

  // The zip archive, records in torch.save's order; written to a temporary name and renamed.
  const std::string tmp = path + ".tmp";
  {
    caffe2::serialize::PyTorchStreamWriter writer(tmp);
    writer.writeRecord("data.pkl", p.bytes().data(), p.bytes().size());
    writer.writeRecord(".format_version", "1", 1);
    writer.writeRecord(".storage_alignment", "64", 2);
    writer.writeRecord("byteorder", "little", 6);
    for (size_t i = 0; i < storages.size(); ++i)
      writer.writeRecord("data/" + std::to_string(i), storages[i].data_ptr(),
                         static_cast<size_t>(storages[i].numel() * storages[i].element_size()));
    writer.writeEndOfFile();
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace c2c
