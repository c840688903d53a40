(module
  (func $legacy_round (param f64) (result f64)
    local.get 0
    f64.floor)
  (func $round (export "round") (param f64) (result f64)
    local.get 0
    call $legacy_round))
