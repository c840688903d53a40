//! Operator-by-operator translation of wasm function bodies to CLIF.
