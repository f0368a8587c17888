package awsdynamo

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stepwise-run/stepwise/core"
)

// item is one DynamoDB item.
type item = map[string]types.AttributeValue

// Body encodings: the first byte of every body attribute.
const (
	bodyPlain byte = 'j'
	bodyGzip  byte = 'z'
	// bodyBlob is followed by the hex SHA-256 of a packed body kept in the
	// blob store (see WithBlobs).
	bodyBlob byte = 'h'
)

const (
	// compressAbove is the size from which a body is gzip-compressed:
	// below it, compression saves too little to pay for itself.
	compressAbove = 4 << 10
	// maxItemSize is DynamoDB's limit on an item, names and values.
	maxItemSize = 400 << 10
)

func attrS(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func attrN(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func attrB(v []byte) types.AttributeValue { return &types.AttributeValueMemberB{Value: v} }

func attrList(vs []string) types.AttributeValue {
	l := make([]types.AttributeValue, len(vs))
	for i, v := range vs {
		l[i] = attrS(v)
	}
	return &types.AttributeValueMemberL{Value: l}
}

// getS returns the string attribute name of it, "" if it has none.
func getS(it item, name string) string {
	if v, ok := it[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// getN returns the number attribute name of it.
func getN(it item, name string) (int64, error) {
	v, ok := it[name].(*types.AttributeValueMemberN)
	if !ok {
		return 0, core.Errorf(core.EINTERNAL, "item %s/%s has no number %q", getS(it, attrPK), getS(it, attrSK), name)
	}
	n, err := strconv.ParseInt(v.Value, 10, 64)
	if err != nil {
		return 0, core.WrapError(core.EINTERNAL, err, "item %s/%s: number %q", getS(it, attrPK), getS(it, attrSK), name)
	}
	return n, nil
}

// getList returns the list of strings name of it.
func getList(it item, name string) []string {
	l, ok := it[name].(*types.AttributeValueMemberL)
	if !ok || len(l.Value) == 0 {
		return nil
	}
	out := make([]string, 0, len(l.Value))
	for _, v := range l.Value {
		if s, ok := v.(*types.AttributeValueMemberS); ok {
			out = append(out, s.Value)
		}
	}
	return out
}

// bodyOf returns the body attribute of it as stored.
func bodyOf(it item) ([]byte, bool) {
	v, ok := it[attrBody].(*types.AttributeValueMemberB)
	if !ok {
		return nil, false
	}
	return v.Value, true
}

// getBody returns the decoded body attribute of it; nil if it has none.
// A blob reference is an error here: only decodeBody resolves them.
func getBody(it item) ([]byte, error) {
	b, ok := bodyOf(it)
	if !ok {
		return nil, nil
	}
	return unpack(b)
}

// pack encodes a body: a tag byte, then b as it is or, when it is larger
// than compressAbove and compression shrinks it, gzip-compressed.
func (s *Store) pack(b []byte) ([]byte, error) {
	if len(b) > compressAbove {
		var buf bytes.Buffer
		buf.Grow(len(b)/4 + 64)
		buf.WriteByte(bodyGzip)
		zw, _ := s.gzipWriters.Get().(*gzip.Writer)
		if zw == nil {
			zw = gzip.NewWriter(&buf)
		} else {
			zw.Reset(&buf)
		}
		_, err := zw.Write(b)
		if err == nil {
			err = zw.Close()
		}
		s.gzipWriters.Put(zw)
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "compress a body")
		}
		if buf.Len() < len(b)+1 {
			return buf.Bytes(), nil
		}
	}
	out := make([]byte, 0, len(b)+1)
	return append(append(out, bodyPlain), b...), nil
}

// unpack decodes what pack encoded.
func unpack(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, core.Errorf(core.EINTERNAL, "a stored body has no encoding tag")
	}
	switch b[0] {
	case bodyPlain:
		return b[1:], nil
	case bodyGzip:
		zr, err := gzip.NewReader(bytes.NewReader(b[1:]))
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "decompress a stored body")
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			return nil, core.WrapError(core.EINTERNAL, err, "decompress a stored body")
		}
		return out, nil
	case bodyBlob:
		return nil, core.Errorf(core.EINTERNAL, "a stored body is blob %s, where no blob is expected", b[1:])
	default:
		return nil, core.Errorf(core.EINTERNAL, "a stored body has the unknown encoding %q", b[0])
	}
}

// itemSize is the size DynamoDB counts for it: attribute names plus
// values, numbers at their most (21 bytes).
func itemSize(it item) int {
	n := 0
	for name, v := range it {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return 21
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + valueSize(e)
		}
		return n
	default:
		return 1
	}
}

// checkSize is EINVALID when it is larger than DynamoDB accepts, naming
// what (the record, execution or step) and its size.
func checkSize(it item, what string) error {
	if n := itemSize(it); n > maxItemSize {
		return core.Errorf(core.EINVALID,
			"%s is %d bytes after compression, over DynamoDB's 400 KB item limit (a store WithBlobs keeps large steps and states in the blob store)",
			what, n)
	}
	return nil
}

// expr collects the placeholders of one request's expressions: DynamoDB
// refuses names and values that no expression uses, so only those used are
// added.
type expr struct {
	names  map[string]string
	values item
}

// n returns the placeholder of attribute name.
func (e *expr) n(name string) string {
	if e.names == nil {
		e.names = map[string]string{}
	}
	e.names["#"+name] = name
	return "#" + name
}

// v returns a new placeholder for the value v.
func (e *expr) v(v types.AttributeValue) string {
	if e.values == nil {
		e.values = item{}
	}
	key := fmt.Sprintf(":v%d", len(e.values))
	e.values[key] = v
	return key
}
