//! Feeds each fuzzer input to [`grit_fuzz::model_config`], whose documentation describes the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A rejected input is the expected outcome for most inputs. Only a panic, a hang or an
    // oversized allocation is a fault.
    let _ = grit_fuzz::model_config(data);
});
