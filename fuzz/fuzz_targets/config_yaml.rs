//! The YAML loader (`kikaku-edge check`, start and every reload): any text,
//! with any environment, is a config or a list of errors with their paths.
#![no_main]

use kikaku_edge::config::load_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `${VAR}` expands to the variable's name twice, or is unset.
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| name.repeat(2));
    match load_str(text, &lookup) {
        Ok(c) => {
            let _ = c.listeners.public.address.len();
        }
        Err(errors) => assert!(!errors.0.is_empty(), "an error without a message"),
    }
});
