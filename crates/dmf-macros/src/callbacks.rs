//! `#[dmf_callbacks]`: the implemented-callback set, read from the impl block's method names
//! (dmf-core's `CallbackSet::for_method` maps each name to its flag).

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{ImplItem, ItemImpl, Path};

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
                // Every method of the impl is a callback (the compiler rejects any other name);
                // dmf-core maps the name to its flag, from the one list of callbacks.
                flags.push(f.sig.ident.to_string());
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
                #krate::module::CallbackSet::empty()
                    #(.union(#krate::module::CallbackSet::for_method(#flags)))*;
        });
    }
    let mut out = quote!(#block);
    if let Some(errors) = errors {
        out.extend(errors.to_compile_error());
    }
    out
}
