//! `uniffi-bindgen`: generates kvs-mobile's Kotlin, Swift and Python
//! bindings (`generate --library <libkvs_mobile.so> --language kotlin
//! --out-dir <dir>`), with the UniFFI version the library was built with.

fn main() {
    uniffi::uniffi_bindgen_main()
}
