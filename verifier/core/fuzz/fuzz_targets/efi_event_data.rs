//! UEFI event-data decoding on arbitrary bytes: the first 4 bytes are the event
//! type (little-endian), the rest the event data.
#![no_main]

use assay_core::eventlog::efi::{self, devicepath, EventData, VariableValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((head, data)) = input.split_first_chunk::<4>() else {
        return;
    };
    let event_type = u32::from_le_bytes(*head);
    let _ = efi::event_type_name(event_type);
    let _ = efi::data_is_digested(event_type);
    let _ = efi::ipl_measured_bytes(data);
    let _ = devicepath::to_text(data);
    let only = efi::variable_data_only(data);
    if let Ok(decoded) = efi::decode(event_type, data) {
        let _ = format!("{decoded:?}");
        match &decoded {
            EventData::Variable(v) => {
                // A decoded variable is a sound UEFI_VARIABLE_DATA.
                assert_eq!(only, Some(v.data.as_slice()));
                if let VariableValue::LoadOption(opt) = &v.value {
                    assert_eq!(
                        opt.device_path.text.is_some(),
                        devicepath::to_text(&opt.device_path.bytes).is_ok()
                    );
                }
            }
            EventData::ImageLoad(img) => {
                assert_eq!(
                    img.device_path.text.is_some(),
                    img.device_path.error.is_none()
                );
            }
            _ => {}
        }
    }
});
