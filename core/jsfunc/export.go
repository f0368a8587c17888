package jsfunc

import (
	"math"
	"strconv"

	"github.com/dop251/goja"
)

// export turns a script's value into JSON-like Go values with a bounded
// walk (depth, nodes, bytes, cycles): goja's own Export and
// JSON.stringify can recurse without bound on a value built to do so.
// Functions and symbols are left out, as JSON.stringify leaves them.
func export(vm *goja.Runtime, v goja.Value) (out any) {
	w := &walker{vm: vm, onPath: map[*goja.Object]bool{}}
	defer func() {
		// A getter that throws ends the walk; an interrupt (the budget,
		// the heap) goes on up, to end the run.
		if r := recover(); r != nil {
			if ie, ok := r.(*goja.InterruptedError); ok {
				panic(ie)
			}
			out = resultTruncatedLabel
		}
	}()
	return w.walk(v, 0)
}

type walker struct {
	vm     *goja.Runtime
	nodes  int
	bytes  int
	onPath map[*goja.Object]bool
}

func (w *walker) full() bool { return w.nodes >= maxResultNodes || w.bytes >= maxResultBytes }

func (w *walker) walk(v goja.Value, depth int) any {
	w.nodes++
	if v == nil || goja.IsUndefined(v) || goja.IsNull(v) {
		return nil
	}
	obj, isObj := v.(*goja.Object)
	if !isObj {
		switch x := v.Export().(type) {
		case string:
			if room := maxResultBytes - w.bytes; len(x) > room {
				x = x[:max(room, 0)] + resultTruncatedLabel
			}
			w.bytes += len(x)
			return x
		case float64:
			w.bytes += 8
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil
			}
			return x
		case int64, bool:
			w.bytes += 8
			return x
		default:
			// Symbols and BigInts have no JSON.
			return nil
		}
	}
	if _, isFn := goja.AssertFunction(obj); isFn {
		return nil
	}
	if depth >= maxResultDepth || w.onPath[obj] {
		return resultTruncatedLabel
	}
	if obj.ClassName() == "Date" {
		return obj.String()
	}
	w.onPath[obj] = true
	defer delete(w.onPath, obj)
	if obj.ClassName() == "Array" {
		n := obj.Get("length").ToInteger()
		out := make([]any, 0, min(n, 64))
		for i := int64(0); i < n; i++ {
			if w.full() {
				out = append(out, resultTruncatedLabel)
				break
			}
			out = append(out, w.walk(obj.Get(strconv.FormatInt(i, 10)), depth+1))
		}
		return out
	}
	out := map[string]any{}
	for _, k := range obj.Keys() {
		if w.full() {
			out[resultTruncatedLabel] = true
			break
		}
		val := obj.Get(k)
		if _, isFn := goja.AssertFunction(val); isFn {
			continue
		}
		w.bytes += len(k)
		out[k] = w.walk(val, depth+1)
	}
	return out
}
