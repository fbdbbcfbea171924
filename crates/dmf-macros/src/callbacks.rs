//! `#[dmf_callbacks]`: the implemented-callback set, read from the impl block's method names.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, Path};

/// Every callback of `ModuleCallbacks`; the `CallbackSet` flag is the name in upper case.
const CALLBACKS: [&str; 38] = [
    "child_modules_add",
    "resources_assign",
    "notification_register",
    "notification_unregister",
    "open",
    "close",
    "destroy",
    "transport_method",
    "prepare_hardware",
    "release_hardware",
    "d0_entry",
    "d0_entry_post_interrupts_enabled",
    "d0_exit_pre_interrupts_disabled",
    "d0_exit",
    "self_managed_io_init",
    "self_managed_io_restart",
    "self_managed_io_suspend",
    "self_managed_io_flush",
    "self_managed_io_cleanup",
    "surprise_removal",
    "query_remove",
    "query_stop",
    "relations_query",
    "usage_notification_ex",
    "arm_wake_from_s0",
    "disarm_wake_from_s0",
    "wake_from_s0_triggered",
    "arm_wake_from_sx_with_reason",
    "disarm_wake_from_sx",
    "wake_from_sx_triggered",
    "queue_io_read",
    "queue_io_write",
    "device_io_control",
    "internal_device_io_control",
    "file_create",
    "file_cleanup",
    "file_close",
    "file_object_deleted",
];

pub(crate) fn expand(args: &TokenStream, item: TokenStream) -> TokenStream {
    let mut krate = quote!(::dmf::core);
    let mut errors: Option<syn::Error> = None;
    if !args.is_empty() {
        let parsed = syn::parse2::<syn::MetaNameValue>(args.clone())
            .ok()
            .filter(|m| m.path.is_ident("crate"))
            .and_then(|m| match m.value {
                syn::Expr::Path(p) => Some(p.path),
                _ => None,
            });
        match parsed {
            Some(path) => {
                let path: Path = path;
                krate = quote!(#path);
            }
            None => {
                errors = Some(syn::Error::new(
                    args.span(),
                    "expected nothing or `crate = path`",
                ));
            }
        }
    }
    let Ok(mut block) = syn::parse2::<ItemImpl>(item.clone()) else {
        {
            let mut out = item;
            out.extend(
                syn::Error::new(
                    proc_macro2::Span::call_site(),
                    "#[dmf_callbacks] goes on `impl ModuleCallbacks for <Module> { … }`",
                )
                .to_compile_error(),
            );
            return out;
        }
    };
    let is_callbacks = block
        .trait_
        .as_ref()
        .and_then(|(_, path, _)| path.segments.last())
        .is_some_and(|s| s.ident == "ModuleCallbacks");
    if !is_callbacks {
        let e = syn::Error::new(
            block.self_ty.span(),
            "#[dmf_callbacks] goes on `impl ModuleCallbacks for <Module> { … }`",
        );
        match &mut errors {
            Some(x) => x.combine(e),
            None => errors = Some(e),
        }
    }
    let mut flags = Vec::new();
    for item in &block.items {
        match item {
            ImplItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                if CALLBACKS.contains(&name.as_str()) {
                    flags.push(format_ident!(
                        "{}",
                        name.to_uppercase(),
                        span = f.sig.ident.span()
                    ));
                }
            }
            ImplItem::Const(c) if c.ident == "IMPLEMENTED" => {
                let e = syn::Error::new(
                    c.ident.span(),
                    "`IMPLEMENTED` is written by #[dmf_callbacks]; remove it",
                );
                match &mut errors {
                    Some(x) => x.combine(e),
                    None => errors = Some(e),
                }
            }
            _ => {}
        }
    }
    if is_callbacks {
        block
            .items
            .retain(|i| !matches!(i, ImplItem::Const(c) if c.ident == "IMPLEMENTED"));
        block.items.push(syn::parse_quote! {
            const IMPLEMENTED: #krate::module::CallbackSet =
                #krate::module::CallbackSet::empty() #(.union(#krate::module::CallbackSet::#flags))*;
        });
    }
    let mut out = quote!(#block);
    if let Some(errors) = errors {
        out.extend(errors.to_compile_error());
    }
    out
}
