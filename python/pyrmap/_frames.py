"""Tables as Python objects, and Python objects as tables.

Reading (``Reader``): a table block (pyrmap._table) becomes the objects a
script gets: a data frame is a ``pandas.DataFrame`` when pandas is used (the
header's flags say auto, pandas or numpy; auto means "when pandas can be
imported") and a ``pyrmap.Frame`` (a dict of numpy arrays with ``index``
and ``attrs``) otherwise; a named list a dict, an unnamed list a tuple.
Numeric, integer, logical, category-code and date-time buffers are
zero-copy read-only views of the block; strings are decoded into Python
str objects (one copy). Missing values: a masked integer or boolean column
is a pandas nullable array (Int32, Int64, boolean) or a numpy.ma masked
array; float64 keeps R's NA as the NaN bit pattern R gave it; strings hold
None; categories -1; date-times NaT.

Writing (``Writer``): a result (dict, tuple, DataFrame, Series, Frame,
masked array, strings, categoricals, date-times, None) becomes a table:
entries, buffers and one fill per buffer that writes its bytes at its
offset. A column the script returns unchanged (the same memory as a buffer
of the input block) is, when the caller allows it, referred to instead of
written (the caller then keeps the input block alive for the views it makes
of it). Every conversion that cannot be exact is a ResultTypeError naming
the column and the type.

R details that Python types do not hold (a column was an R Date, an
integer64, a POSIXct's tzone attribute) travel in the frame's ``attrs``
under "pyrmap" and are used when the frame comes back.
"""

from __future__ import annotations

import sys

import numpy as np

from . import _array
from . import _header as H
from . import _table as T
from ._errors import ProtocolError, ResultTypeError

NA_REAL_BITS = 0x7FF00000000007A2
INT32_NA = -(1 << 31)
INT64_NA = -(1 << 63)
_SENTINELS = {H.DTYPE_INT32: INT32_NA, H.DTYPE_INT64: INT64_NA}
_NS_PER = {T.UNIT_DAY: 86400 * 10**9, T.UNIT_SECOND: 10**9, T.UNIT_MILLI: 10**6,
           T.UNIT_MICRO: 10**3, T.UNIT_NANO: 1}
ATTRS_KEY = "pyrmap"

# Elements converted per chunk when a column is re-laid out while written.
_CHUNK = 1 << 20


class Categorical:
    """A category column without pandas: ``codes`` (numpy integers, 0-based,
    -1 missing), ``categories`` (a list of str) and ``ordered``.
    ``numpy.asarray()`` gives the values (an object array, None missing)."""

    __slots__ = ("codes", "categories", "ordered")

    def __init__(self, codes, categories, ordered=False):
        self.codes = np.asarray(codes)
        self.categories = list(categories)
        self.ordered = bool(ordered)
        if self.codes.ndim != 1 or self.codes.dtype.kind != "i":
            raise ValueError("Categorical codes must be a 1-D integer array")

    def __len__(self):
        return len(self.codes)

    def __array__(self, dtype=None):
        cats = np.empty(len(self.categories) + 1, object)
        cats[:-1] = self.categories
        cats[-1] = None
        out = cats[self.codes]  # -1 picks the trailing None
        return out if dtype is None else out.astype(dtype)

    def __eq__(self, other):
        if not isinstance(other, Categorical):
            return NotImplemented
        return (self.categories == other.categories and self.ordered == other.ordered
                and np.array_equal(self.codes, other.codes))

    __hash__ = None

    def __repr__(self):
        return "pyrmap.Categorical(%r, categories=%r%s)" % (
            list(np.asarray(self)), self.categories, ", ordered=True" if self.ordered else "")


class Frame(dict):
    """A data frame without pandas: column name -> numpy array (or
    numpy.ma masked array, or Categorical), in order; ``index``: the row
    names (a numpy array) or None for R's automatic ones; ``attrs``: R
    details (see the module's doc); ``nrows``: the number of rows when there
    are neither columns nor row names to tell it (else None). Returned from a
    script, it becomes an R data.frame."""

    def __init__(self, columns=(), index=None, attrs=None, nrows=None):
        super().__init__(columns)
        self.index = index
        self.attrs = dict(attrs or {})
        self.nrows = nrows

    def __repr__(self):
        return "pyrmap.Frame(%s, index=%r)" % (dict.__repr__(self), self.index)


def _pandas():
    """pandas if it is imported already (a result can only be a pandas
    object if it is), else None; never imports it."""
    return sys.modules.get("pandas")


def _import_pandas(required: bool):
    try:
        import pandas
        return pandas
    except Exception as e:  # a broken install raises more than ImportError
        if required:
            raise ImportError(
                "pandas was asked for (pandas = TRUE in R) but cannot be imported by %s: %s; "
                "install python3-pandas, or let frames arrive as dicts of numpy arrays "
                "(pandas = FALSE)" % (sys.executable, e)) from None
        return None


def _needs_pandas(t: T.Table) -> bool:
    for e in t.entries:
        if e.kind in (T.KIND_FRAME, T.KIND_CATEGORY) or e.mask != T.NO_INDEX:
            return True
        if e.kind == T.KIND_DATETIME and e.tz:
            return True
    return False


# ------------------------------------------------------------------ reading

class Reader:
    """Builds the Python objects of a table. ``view(i)`` gives buffer i as a
    read-only numpy array (zero-copy); ``flags`` are the header's."""

    def __init__(self, table: T.Table, view, flags: int, where: str):
        self.t = table
        self.view = view
        self.where = where
        mode = (flags & H.FLAG_TABLES_MASK) >> H.FLAG_TABLES_SHIFT
        self.pd = None
        if mode == H.TABLES_PANDAS:
            self.pd = _import_pandas(True)
        elif mode == H.TABLES_AUTO and _needs_pandas(table):
            self.pd = _import_pandas(False)

    def _bad(self, i, why):
        raise ProtocolError("invalid table in %s: %s %s" % (self.where, T.entry_path(self.t, i), why))

    def root(self):
        return self.value(0)

    def call(self, func):
        """Calls ``func`` with the root: a named list as keyword arguments,
        an unnamed list as positional arguments, anything else as the one
        argument."""
        value = self.value(0)
        e = self.t.entries[0]
        if e.kind == T.KIND_LIST:
            return func(**value) if e.flags & T.ENTRY_NAMED else func(*value)
        return func(value)

    def value(self, i, in_frame=False):
        e = self.t.entries[i]
        k = e.kind
        if k == T.KIND_NULL:
            return None
        if k == T.KIND_LIST:
            elems = [c for c in e.children if self.t.entries[c].role == T.ROLE_ELEMENT]
            if e.flags & T.ENTRY_NAMED:
                out = {}
                for c in elems:
                    name = self.t.entries[c].name
                    if name in out:
                        self._bad(c, "repeats the name %r, which a dict cannot hold twice" % name)
                    out[name] = self.value(c)
                return out
            return tuple(self.value(c) for c in elems)
        if k == T.KIND_FRAME:
            return self.frame(i)
        if k == T.KIND_ARRAY:
            return self.array(i, in_frame)
        if k == T.KIND_STRING:
            return self.strings(i, masked_as=("pandas" if self.pd else "numpy"))
        if k == T.KIND_CATEGORY:
            return self.category(i)
        return self.datetime(i, in_frame)

    def mask(self, e):
        return None if e.mask == T.NO_INDEX else self.view(e.mask)

    def array(self, i, in_frame=False):
        e = self.t.entries[i]
        data = self.view(e.buffer)
        mask = self.mask(e)
        if mask is not None and mask.any():
            if self.pd is not None and data.ndim == 1 and data.dtype.kind in "biuf":
                arrays = self.pd.arrays
                kind = {"b": arrays.BooleanArray, "f": arrays.FloatingArray}.get(
                    data.dtype.kind, arrays.IntegerArray)
                value = kind(data, mask, copy=False)
            else:
                value = np.ma.MaskedArray(data, mask=mask, copy=False)
        else:
            value = data
        names = self._child(e, T.ROLE_NAMES)
        if names is not None and self.pd is not None and data.ndim == 1:
            return self.pd.Series(value, index=self.strings(names, "numpy"), copy=False)
        return value

    def _child(self, e, role):
        for c in e.children:
            if self.t.entries[c].role == role:
                return c
        return None

    def strings(self, i, masked_as="numpy"):
        """An object array of str (None where missing); with a mask and
        masked_as "numpy", a masked array of it."""
        e = self.t.entries[i]
        offsets = self.view(e.buffer)
        data = self.view(e.buffer + 1)
        n = e.length
        if n and (offsets[0] != 0 or offsets[-1] > len(data)
                  or (n > 1 and bool((offsets[1:] < offsets[:-1]).any()))):
            self._bad(i, "has string offsets that are not increasing within its bytes")
        raw = data.tobytes()
        offs = offsets.tolist()
        try:
            text = raw.decode("utf-8")
            if len(text) == len(raw):  # ASCII: byte offsets are character offsets
                values = [text[a:b] for a, b in zip(offs, offs[1:])]
            else:
                values = [raw[a:b].decode("utf-8") for a, b in zip(offs, offs[1:])]
        except UnicodeDecodeError:
            self._bad(i, "holds text that is not valid UTF-8")
        out = np.empty(n, object)
        if n:
            out[:] = values
        mask = self.mask(e)
        if mask is not None and mask.any():
            out[mask] = None
            if masked_as == "numpy":
                return np.ma.MaskedArray(out, mask=mask.copy())
        return out

    def category(self, i):
        e = self.t.entries[i]
        raw = self.view(e.buffer)
        codes = raw.view("<i%d" % e.unit)
        levels = self.strings(self._child(e, T.ROLE_LEVELS))
        if len(codes) and (int(codes.min()) < -1 or int(codes.max()) >= len(levels)):
            self._bad(i, "has codes outside its %d levels" % len(levels))
        ordered = bool(e.flags & T.ENTRY_ORDERED)
        if self.pd is not None:
            try:
                cats = self.pd.Index(levels, dtype=object)
                return self.pd.Categorical.from_codes(codes, categories=cats, ordered=ordered)
            except ValueError as err:
                self._bad(i, "cannot be a pandas Categorical: %s" % err)
        return Categorical(codes, levels.tolist(), ordered)

    def datetime(self, i, in_frame=False):
        e = self.t.entries[i]
        unit = T.UNIT_NAMES[e.unit]
        values = self.view(e.buffer).view("M8[%s]" % unit)
        if self.pd is None or not (in_frame or e.tz):
            return values  # numpy keeps any unit; the zone goes into a frame's attrs
        if unit != "ns":
            ints = values.view("<i8")
            real = ints[ints != INT64_NA]
            limit = (1 << 63) // _NS_PER[e.unit]
            if len(real) and (int(real.min()) <= -limit or int(real.max()) >= limit):
                self._bad(i, "holds date-times beyond what pandas holds (datetime64[ns]: "
                          "years 1677 to 2262)")
            values = values.astype("M8[ns]")
        if e.tz:
            dtype = self.pd.DatetimeTZDtype(tz=e.tz)
            return self.pd.arrays.DatetimeArray(values, dtype=dtype, copy=False)
        return values

    def frame(self, i):
        e = self.t.entries[i]
        names, columns, r = [], [], {}
        for c in e.children:
            ce = self.t.entries[c]
            if ce.role != T.ROLE_ELEMENT:
                continue
            names.append(ce.name)
            columns.append(self.value(c, in_frame=True))
            if ce.kind == T.KIND_ARRAY and ce.flags & T.ENTRY_INTEGER64:
                r.setdefault("integer64", []).append(ce.name)
            if ce.kind == T.KIND_DATETIME:
                if ce.unit == T.UNIT_DAY:
                    r.setdefault("date", []).append(ce.name)
                else:
                    r.setdefault("tzone", {})[ce.name] = (
                        None if ce.flags & T.ENTRY_NO_TZONE else ce.tz)
        rn = self._child(e, T.ROLE_NAMES)
        index = None
        if rn is not None:
            re = self.t.entries[rn]
            index = self.strings(rn) if re.kind == T.KIND_STRING else self.view(re.buffer)
        attrs = {ATTRS_KEY: r} if r else {}
        if self.pd is None:
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                self._bad(i, "has two columns named %r, which a dict cannot hold (use pandas)" % dup)
            return Frame(zip(names, columns), index=index, attrs=attrs, nrows=e.length)
        pd = self.pd
        idx = pd.RangeIndex(e.length) if index is None else pd.Index(index)
        df = pd.DataFrame({k: col for k, col in enumerate(columns)}, index=idx, copy=False)
        df.columns = pd.Index(names, dtype=object)
        df.attrs.update(attrs)
        return df


def reader_for_block(mm, block_offset: int, table: T.Table, flags: int, where: str) -> Reader:
    """A Reader whose buffer views are zero-copy views of ``mm`` (an mmap or
    any buffer), the block starting at ``block_offset``. Each view is its
    own buffer export of ``mm`` (a reference to it), so that a view the
    script keeps keeps the mapping."""
    def view(b):
        d = table.buffers[b]
        dtype = _array.NUMPY_DTYPES[d.dtype]
        flat = np.frombuffer(mm, dtype, count=d.count, offset=block_offset + d.offset)
        if not flat.flags.writeable:
            return flat.reshape(d.shape, order="F" if d.order == H.ORDER_F else "C")
        flat.flags.writeable = False
        return flat.reshape(d.shape, order="F" if d.order == H.ORDER_F else "C")
    return Reader(table, view, flags, where)


# ------------------------------------------------------------------ writing

class Writer:
    """Turns a result into a table: ``add(value)``, then ``store(sink)``.
    ``input_span`` (address, size) of the input block, when the caller
    allows references to it (header flag FLAG_INPUT_REFS)."""

    def __init__(self, flags: int, input_span=None):
        self.flags = flags
        self.t = T.Table()
        self.fills = []
        self.input_span = input_span

    # -------------------------------------------------------------- entries

    def _entry(self, kind, parent, role, name, **kw):
        return self.t.add(T.Entry(kind=kind, parent=parent, role=role, name=name, children=[], **kw))

    def _buffer(self, desc, fill, location=T.IN_BLOCK):
        self.fills.append(fill)
        return self.t.add_buffer(desc, location)

    def add(self, value, parent=T.NO_INDEX, role=T.ROLE_ELEMENT, name="", what="the result"):
        pd = _pandas()
        if value is None:
            return self._entry(T.KIND_NULL, parent, role, name)
        if isinstance(value, dict) and not isinstance(value, Frame):
            i = self._entry(T.KIND_LIST, parent, role, name, flags=T.ENTRY_NAMED, length=len(value))
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ResultTypeError(
                        "cannot store %s: its key %r is a %s; the keys of a dict that becomes an "
                        "R list must be str" % (what, k, type(k).__name__))
                self.add(v, i, T.ROLE_ELEMENT, k, "element %r of %s" % (k, what))
            return i
        if isinstance(value, tuple):
            i = self._entry(T.KIND_LIST, parent, role, name, length=len(value))
            for k, v in enumerate(value):
                self.add(v, i, T.ROLE_ELEMENT, "", "element %d of %s" % (k + 1, what))
            return i
        if isinstance(value, Frame):
            return self._frame(list(value.keys()), list(value.values()), value.index,
                               value.attrs, parent, role, name, what,
                               nrows=None if (len(value) or value.index is not None)
                               else (value.nrows or 0))
        if pd is not None and isinstance(value, pd.DataFrame):
            if isinstance(value.columns, pd.MultiIndex):
                raise ResultTypeError("cannot store %s: a DataFrame with MultiIndex columns "
                                      "(flatten them first)" % what)
            cols = [_label(c, what) for c in value.columns]
            series = [value.iloc[:, j] for j in range(value.shape[1])]
            return self._frame(cols, series, value.index, value.attrs, parent, role, name, what,
                               nrows=len(value))
        if pd is not None and isinstance(value, pd.Series):
            i = self.vector(value, parent, role, name, what)
            if not _default_index(pd, value.index):
                self.vector(_index_values(pd, value.index, what), i, T.ROLE_NAMES, "",
                            "the index of " + what, strings_only=True)
            return i
        return self.vector(value, parent, role, name, what)

    def _frame(self, names, columns, index, attrs, parent, role, name, what, nrows=None):
        pd = _pandas()
        r = (attrs or {}).get(ATTRS_KEY, {}) if isinstance(attrs, dict) else {}
        if nrows is None:
            lengths = {len(c) for c in columns}
            if index is not None:
                lengths.add(len(index))
            if len(lengths) > 1:
                raise ResultTypeError("cannot store %s: a pyrmap.Frame whose columns have "
                                      "different lengths (%s)" % (what, sorted(lengths)))
            nrows = lengths.pop() if lengths else 0
        i = self._entry(T.KIND_FRAME, parent, role, name, length=nrows)
        for col_name, col in zip(names, columns):
            hint = {"integer64": col_name in r.get("integer64", ()),
                    "date": col_name in r.get("date", ())}
            if col_name in r.get("tzone", {}):
                hint["tzone"] = r["tzone"][col_name]
            c = self.vector(col, i, T.ROLE_ELEMENT, col_name,
                            "column '%s' of %s" % (col_name, what), hint=hint)
            ce = self.t.entries[c]
            if ce.kind == T.KIND_ARRAY and len(self.t.buffers[ce.buffer].shape) != 1:
                raise ResultTypeError("cannot store %s: column '%s' has %d dimensions"
                                      % (what, col_name, len(self.t.buffers[ce.buffer].shape)))
        if index is not None and not (pd is not None and isinstance(index, pd.Index)
                                      and _default_index(pd, index)):
            values = _index_values(pd, index, what) if pd is not None and isinstance(
                index, pd.Index) else np.asarray(index)
            if len(set(values.tolist())) != len(values):
                raise ResultTypeError("cannot store %s: its index has duplicates, and R's "
                                      "row names must be unique" % what)
            if values.dtype.kind in "iu":
                if len(values) and (values.min() <= INT32_NA or values.max() > 2**31 - 1):
                    raise ResultTypeError("cannot store %s: its integer row names do not fit "
                                          "R's integer" % what)
                self.vector(values.astype(np.int32), i, T.ROLE_NAMES, "", "the index of " + what)
            else:
                self.vector(values, i, T.ROLE_NAMES, "", "the index of " + what, strings_only=True)
        return i

    # -------------------------------------------------------------- vectors

    def vector(self, value, parent, role, name, what, hint=None, strings_only=False):
        """One array-like: numbers, booleans, strings, categories, date-times,
        masked or not."""
        pd = _pandas()
        hint = hint or {}
        if isinstance(value, Categorical):
            return self._category(value.codes, value.categories, value.ordered, parent, role,
                                  name, what)
        if isinstance(value, str):
            value = np.array([value], dtype=object)
        if pd is not None:
            if isinstance(value, (pd.Series, pd.Index)):
                value = value.array
            dtype = getattr(value, "dtype", None)
            if isinstance(dtype, pd.CategoricalDtype):
                # (pd.Categorical() of a Categorical copies its codes)
                cat = value if isinstance(value, pd.Categorical) else pd.Categorical(value)
                return self._category(cat.codes, list(cat.categories), cat.ordered, parent,
                                      role, name, what, pandas_categories=cat.categories)
            if isinstance(dtype, pd.DatetimeTZDtype):
                return self._datetime(np.asarray(value.tz_convert("UTC").tz_localize(None)),
                                      _tz_name(dtype.tz, what), parent, role, name, what, hint)
            if isinstance(value, pd.api.extensions.ExtensionArray):
                if isinstance(value, pd.arrays.StringArray) or str(dtype) == "string":
                    obj = np.asarray(value, dtype=object)
                    return self._strings(obj, parent, role, name, what)
                masked = getattr(pd.core.arrays, "masked", None)
                base = getattr(masked, "BaseMaskedArray", None) if masked else None
                if base is not None and isinstance(value, base):
                    if str(dtype) == "Int64":  # pandas' int64 with NA is R's integer64
                        hint = dict(hint, integer64=True)
                    return self._array(value._data, value._mask, parent, role, name, what, hint)
                if isinstance(value, pd.arrays.DatetimeArray):
                    return self._datetime(np.asarray(value), "", parent, role, name, what, hint)
                if isinstance(value, pd.arrays.PandasArray):
                    value = value.to_numpy()
                else:
                    raise ResultTypeError("cannot store %s: pandas dtype %s is not supported "
                                          "(numbers, booleans, strings, categories and date-times "
                                          "are)" % (what, dtype))
        if isinstance(value, np.ma.MaskedArray):
            mask = np.ma.getmaskarray(value)
            data = np.ma.getdata(value)
            if data.dtype.kind in "OUS":
                obj = np.array(data, dtype=object)
                obj[mask] = None
                return self._strings(obj, parent, role, name, what)
            return self._array(data, mask if mask.any() else None, parent, role, name, what, hint)
        try:
            arr = np.asarray(value)
        except Exception as e:
            raise ResultTypeError("cannot store %s: %s that numpy.asarray cannot turn into an "
                                  "array (%s: %s)" % (what, _describe(value), type(e).__name__, e)) from e
        if arr.ndim == 0:
            arr = arr.reshape(1)
        kind = arr.dtype.kind
        if kind in "OU":
            return self._strings(arr, parent, role, name, what)
        if strings_only:
            raise ResultTypeError("cannot store %s: names must be strings, not %s"
                                  % (what, arr.dtype))
        if kind == "M":
            return self._datetime(arr, "", parent, role, name, what, hint)
        return self._array(arr, None, parent, role, name, what, hint)

    def _ref(self, arr):
        """The offset of ``arr`` in the input block if it is a whole, aligned
        buffer there (the script returned it unchanged), else None."""
        if self.input_span is None or not isinstance(arr, np.ndarray) or arr.size == 0:
            return None
        base, size = self.input_span
        if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
            return None
        addr = arr.__array_interface__["data"][0]
        off = addr - base
        if off < 0 or off + arr.nbytes > size or off % H.PAYLOAD_ALIGNMENT:
            return None
        return off

    def _marked_ref(self, arr, mask, code):
        """Whether masked data ``arr`` can be referred to as it is: it is a
        buffer of the input block (read-only: what R wrote) of dtype ``code``
        and holds R's missing value wherever ``mask`` is set (so it can pair
        with any mask, the input's own or another)."""
        if arr.dtype != _array.NUMPY_DTYPES[code] or self._ref(arr) is None:
            return False
        under = arr[mask]
        if code == H.DTYPE_FLOAT64:
            return bool((under.view(np.uint64) == NA_REAL_BITS).all())
        return bool((under == _SENTINELS[code]).all())

    def _plain(self, arr, code, order, parent_what):
        """A buffer holding ``arr`` as dtype ``code`` (referred to in the
        input block when it lies there unchanged)."""
        desc = H.ArrayDesc.make(code, arr.shape, order)
        fortran = order == H.ORDER_F
        if arr.dtype == _array.NUMPY_DTYPES[code] and (
                arr.ndim < 2 or (arr.flags.f_contiguous if fortran else arr.flags.c_contiguous)):
            off = self._ref(arr)
            if off is not None:
                desc.offset = off
                return self._buffer(desc, None, T.IN_INPUT)
        return self._buffer(desc, lambda sink, pos: sink.array(arr, code, fortran, pos))

    def _array(self, data, mask, parent, role, name, what, hint):
        arr = np.asarray(data)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        code = _array._target_code(arr.dtype)
        if code is None or arr.dtype.kind == "M":
            raise ResultTypeError("cannot store %s: numpy dtype %s is not supported (supported: "
                                  "%s, strings, categories, date-times)"
                                  % (what, arr.dtype, H.SUPPORTED_DTYPES))
        if arr.ndim > H.MAX_DIMS:
            raise ResultTypeError("cannot store %s: it has %d dimensions (at most %d)"
                                  % (what, arr.ndim, H.MAX_DIMS))
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and arr.size and int(arr.max()) > 2**63 - 1:
            raise ResultTypeError("cannot store %s: a uint64 value %d exceeds the int64 maximum"
                                  % (what, int(arr.max())))
        flags = T.ENTRY_INTEGER64 if code == H.DTYPE_INT64 and hint.get("integer64") else 0
        fortran = _array._wants_fortran(arr, self.flags)
        order = H.ORDER_F if fortran else H.ORDER_C
        i = self._entry(T.KIND_ARRAY, parent, role, name, length=arr.size, flags=flags)
        e = self.t.entries[i]
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != arr.shape:
                raise ResultTypeError("cannot store %s: its mask has shape %s for data of shape %s"
                                      % (what, mask.shape, arr.shape))
        if mask is None or code not in (H.DTYPE_INT32, H.DTYPE_INT64, H.DTYPE_FLOAT64) or \
                self._marked_ref(arr, mask, code):
            e.buffer = self._plain(arr, code, order, what)
        else:
            desc = H.ArrayDesc.make(code, arr.shape, order)
            e.buffer = self._buffer(desc, lambda sink, pos: sink.masked(arr, mask, code, fortran, pos))
        if mask is not None:
            e.flags |= T.ENTRY_MASKED
            e.mask = self._plain(mask, H.DTYPE_BOOL, order, what)
        return i

    def _strings(self, arr, parent, role, name, what):
        arr = np.asarray(arr)
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        n = len(arr)
        missing = np.zeros(n, bool)
        parts = []
        pd = _pandas()
        na = pd.NA if pd is not None else None
        if arr.dtype.kind == "U":
            parts = [s.encode("utf-8") for s in arr.tolist()]
        else:
            for j, v in enumerate(arr.tolist()):
                if isinstance(v, str):
                    try:
                        parts.append(v.encode("utf-8"))
                    except UnicodeEncodeError:
                        raise ResultTypeError("cannot store %s: element %d is a str that is not "
                                              "valid Unicode (lone surrogates)" % (what, j + 1)) from None
                elif v is None or v is na or (isinstance(v, float) and v != v):
                    missing[j] = True
                    parts.append(b"")
                else:
                    raise ResultTypeError(
                        "cannot store %s: it is an object column holding a Python %s at element "
                        "%d; only str (and None for missing) can become R character%s"
                        % (what, _describe_type(v), j + 1, _mixed_zones_hint(arr)))
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(parts), np.uint8)
        i = self._entry(T.KIND_STRING, parent, role, name, length=n)
        e = self.t.entries[i]
        e.buffer = self._plain(offsets, H.DTYPE_INT64, H.ORDER_C, what)
        self._plain(data, H.DTYPE_UINT8, H.ORDER_C, what)
        if missing.any():
            e.flags |= T.ENTRY_MASKED
            e.mask = self._plain(missing, H.DTYPE_BOOL, H.ORDER_C, what)
        return i

    def _category(self, codes, categories, ordered, parent, role, name, what,
                  pandas_categories=None):
        codes = np.asarray(codes)
        cats = list(categories)
        for c in cats:
            if not isinstance(c, str):
                raise ResultTypeError(
                    "cannot store %s: a categorical whose categories are %s, not str; R factor "
                    "levels are strings (convert them with .cat.rename_categories(str))"
                    % (what, _describe_type(c)))
        width = codes.dtype.itemsize
        if codes.dtype.kind != "i" or width not in (1, 2, 4, 8):
            raise ResultTypeError("cannot store %s: category codes of dtype %s" % (what, codes.dtype))
        if width == 8:
            codes = codes.astype(np.int32)
            width = 4
        codes = np.ascontiguousarray(codes)
        i = self._entry(T.KIND_CATEGORY, parent, role, name, length=len(codes),
                        flags=T.ENTRY_ORDERED if ordered else 0, unit=width)
        e = self.t.entries[i]
        raw = codes.view(np.uint8)
        e.buffer = self._plain(raw, H.DTYPE_UINT8, H.ORDER_C, what)
        self._strings(np.array(cats, dtype=object), i, T.ROLE_LEVELS, "", "the levels of " + what)
        return i

    def _datetime(self, arr, tz, parent, role, name, what, hint):
        arr = np.asarray(arr)
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        unit, count = np.datetime_data(arr.dtype)
        if count != 1 or unit not in ("D", "s", "ms", "us", "ns", "h", "m"):
            raise ResultTypeError("cannot store %s: datetime64 of unit %s%s is not supported (D, "
                                  "h, m, s, ms, us, ns are)" % (what, count if count != 1 else "", unit))
        if unit in ("h", "m"):
            arr = arr.astype("M8[s]")
            unit = "s"
        code = T.UNIT_CODES[unit]
        ints = arr.view(np.int64)
        if hint.get("date") and unit != "D":
            # An R Date that pandas held in nanoseconds goes back as a Date
            # when every value is a whole day.
            factor = _NS_PER[T.UNIT_DAY] // _NS_PER[code]
            real = ints[ints != INT64_NA]
            if not len(real) or not bool((real % factor).any()):
                days = np.where(ints == INT64_NA, INT64_NA, ints // factor)
                ints, code = days, T.UNIT_DAY
        flags = 0
        if not tz and code != T.UNIT_DAY and "tzone" in hint:
            # A naive column that came from an R POSIXct goes back with its
            # tzone: none, "" (R's local time) or the zone it had.
            tzone = hint["tzone"]
            if tzone is None:
                flags |= T.ENTRY_NO_TZONE
            elif tzone == "":
                flags |= T.ENTRY_LOCAL_TIME
            else:
                tz = tzone
        i = self._entry(T.KIND_DATETIME, parent, role, name, length=len(ints), unit=code, tz=tz,
                        flags=flags)
        self.t.entries[i].buffer = self._plain(ints, H.DTYPE_INT64, H.ORDER_C, what)
        return i

    # -------------------------------------------------------------- storing

    def store(self, sink) -> H.ArrayDesc:
        """Lays the table out, sizes the sink, writes the directory and every
        buffer; returns the block's descriptor (uint8[size] at offset 0)."""
        T.layout(self.t)
        sink.reserve(self.t.size)
        sink.write(T.encode_directory(self.t), 0)
        for b, fill in enumerate(self.fills):
            if fill is not None and self.t.locations[b] == T.IN_BLOCK:
                fill(sink, self.t.buffers[b].offset)
        return H.ArrayDesc.make(H.DTYPE_UINT8, (self.t.size,))


def _label(c, what):
    if isinstance(c, str):
        return c
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
        return str(c)
    raise ResultTypeError("cannot store %s: column label %r is a %s; R names are strings"
                          % (what, c, type(c).__name__))


def _default_index(pd, index) -> bool:
    return (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
            and index.name is None)


def _index_values(pd, index, what):
    if isinstance(index, pd.MultiIndex):
        raise ResultTypeError("cannot store %s: a MultiIndex cannot become R names" % what)
    values = np.asarray(index)
    if values.dtype.kind in "iu":
        return values
    if values.dtype.kind in "OU":
        return values
    raise ResultTypeError("cannot store %s: an index of dtype %s cannot become R names "
                          "(strings and integers can)" % (what, index.dtype))


def _tz_name(tz, what):
    name = str(tz)
    if name in ("tzutc()", "UTC+00:00", "UTC", "utc"):
        return "UTC"
    if "(" in name or "+" in name or (name.startswith("UTC") and len(name) > 3):
        raise ResultTypeError("cannot store %s: time zone %s is not a named zone that R knows "
                              "(use an IANA name such as 'Europe/Berlin', or UTC)" % (what, name))
    return name


def _describe(value):
    return "a %s" % _describe_type(value)


def _describe_type(v):
    kind = type(v)
    return kind.__qualname__ if kind.__module__ == "builtins" else "%s.%s" % (
        kind.__module__, kind.__qualname__)


def _mixed_zones_hint(arr):
    import datetime

    zones = {str(v.tzinfo) for v in arr.tolist() if isinstance(v, datetime.datetime)}
    if len(zones) > 1:
        return (" (date-times with mixed time zones %s: convert them to one zone, for example "
                "with pandas.to_datetime(..., utc=True))" % ", ".join(sorted(zones)))
    return ""


# ------------------------------------------------------------------ sinks

class FdSink:
    """Writes a block at offset 0 of a segment open as ``fd`` (pwrite)."""

    def __init__(self, fd: int, what: str = "the result"):
        self.fd = fd
        self.what = what

    def reserve(self, nbytes):
        _array.reserve(self.fd, nbytes, self.what)

    def write(self, data, pos):
        _array._pwrite_all(self.fd, memoryview(data).cast("B"), pos)

    def array(self, arr, code, fortran, pos):
        _array.write_payload(self.fd, arr, code, fortran, pos)

    def masked(self, arr, mask, code, fortran, pos):
        """``arr`` as ``code`` with R's missing value where ``mask`` is set."""
        target = _array.NUMPY_DTYPES[code]
        src = arr.T if fortran else arr
        m = mask.T if fortran else mask
        flat_src = src.reshape(-1, order="C") if src.flags.c_contiguous else np.ravel(src)
        flat_m = np.ravel(m)
        n = flat_src.size
        for start in range(0, n, _CHUNK):
            chunk = flat_src[start:start + _CHUNK].astype(target, copy=True)
            hole = flat_m[start:start + _CHUNK]
            if code == H.DTYPE_FLOAT64:
                chunk.view(np.uint64)[hole] = NA_REAL_BITS
            else:
                chunk[hole] = _SENTINELS[code]
            self.write(chunk.view(np.uint8), pos + start * target.itemsize)


class MemorySink(FdSink):
    """Writes a block into a writable buffer (a pool worker's area) at
    ``base``, at most ``capacity`` bytes; ``reserve`` raises MemoryError when
    the block does not fit (the caller then uses a segment)."""

    def __init__(self, buf, base, capacity):
        self.buf = buf
        self.base = base
        self.capacity = capacity

    def reserve(self, nbytes):
        if nbytes > self.capacity:
            raise MemoryError("the block does not fit")

    def write(self, data, pos):
        view = memoryview(data).cast("B")
        self.buf[self.base + pos:self.base + pos + len(view)] = view

    def array(self, arr, code, fortran, pos):
        target = _array.NUMPY_DTYPES[code]
        if arr.size == 0:
            return
        dst = np.ndarray(arr.shape, target, buffer=self.buf, offset=self.base + pos,
                         order="F" if fortran else "C")
        np.copyto(dst, arr, casting="unsafe")


def plan_size_hint(value) -> bool:
    """Whether ``value`` needs a table (else it is stored as one array)."""
    if isinstance(value, (dict, tuple, Frame, Categorical, str, np.ma.MaskedArray)) or value is None:
        return True
    pd = _pandas()
    if pd is not None and isinstance(value, (pd.DataFrame, pd.Series, pd.Index,
                                             pd.api.extensions.ExtensionArray)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "OUSMm" and value.dtype.fields is None
    if isinstance(value, list):
        try:
            return np.asarray(value).dtype.kind in "OUM"
        except Exception:
            return False
    return False


def input_span(mm, block_offset, size):
    """(address, size) of the input block in mapping ``mm``, for Writer."""
    view = np.frombuffer(mm, np.uint8, count=size, offset=block_offset) if size else None
    if view is None:
        return None
    return (view.__array_interface__["data"][0], size)

